"""The status page, rendered from values and read back with an HTML parser."""

from __future__ import annotations

from html.parser import HTMLParser

from pipecache.client.protocol import JobFailure, JobInfo, WorkerInfo
from pipecache.master.status import RECENT_JOBS, pick_jobs, render_status

NOW = 1_700_000_000.0
EVIL = '<script>alert("x")</script>'
WORKERS = [
    WorkerInfo("w0", "http://10.0.0.1:9100", {"memory": 1 << 30, "ssd": 0}, {"memory": 1 << 29}, 7,
               NOW - 0.4, {"hits_memory": 3, "misses": 1, "bytes_memory": 3 << 20, "bytes_miss": 1 << 20,
                           "ufs_reads": 1, "ufs_bytes": 1 << 20}),
    WorkerInfo(EVIL, 'http://"quoted"/', {"memory": 100, "ssd": 400}, {"memory": 25, "ssd": 100}, 1, NOW),
]
RUNNING = JobInfo("job-3", "running", [f"s3://data/{EVIL}"], priority=1, objects_total=10, objects_done=2,
                  bytes_total=10 << 20, bytes_done=5 << 20, blocks_total=20, blocks_resident=5,
                  throughput_bps=1 << 20, eta_seconds=5.0)


class Page(HTMLParser):
    """Tags, attributes and text of a page, and whether every element was closed."""

    VOID = {"meta", "br", "img", "link", "input", "hr"}

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.open: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def test_page_is_plain_self_refreshing_html() -> None:
    text = render_status(WORKERS, [RUNNING], now=NOW, refresh=7)
    page = Page(text)
    assert page.open == []  # every element closed
    assert page.find("meta", **{"http-equiv": "refresh", "content": "7"})
    assert not page.find("script") and not page.find("link") and not page.find("img")
    assert "src=" not in text and "<script" not in text
    assert "2023-11-14 22:13:20 UTC" in page.all_text


def test_values_from_the_network_are_escaped() -> None:
    page = Page(render_status(WORKERS, [RUNNING], now=NOW))
    # The hostile id and path are text on the page, not markup.
    assert EVIL in page.all_text
    assert 'http://"quoted"/' in page.all_text
    assert page.find("tr", **{"data-worker": EVIL})


def test_workers_tiers_and_hit_ratio() -> None:
    page = Page(render_status(WORKERS, [], now=NOW))
    text = page.all_text
    assert "w0" in text and "http://10.0.0.1:9100" in text
    assert page.find("span", role="progressbar", **{"aria-label": "memory use", "aria-valuenow": "50.0"})
    assert page.find("span", role="progressbar", **{"aria-label": "ssd use", "aria-valuenow": "25.0"})
    assert "off" in text  # w0 has no SSD tier
    assert "75.0% of block reads (75.0% of bytes)" in text  # cluster: 3 hits of 4 reads
    assert "1.0MiB in 1 reads" in text  # under-store bytes
    assert "0.4s ago" in text
    assert "1 worker(s) send no statistics" in text


def test_running_job_shows_its_progress() -> None:
    page = Page(render_status(WORKERS, [RUNNING], now=NOW))
    assert page.find("tr", **{"data-job": "job-3", "class": "job-running"})
    bars = page.find("span", role="progressbar", **{"aria-label": "progress of job-3"})
    assert [b["aria-valuenow"] for b in bars] == ["25.0"]
    assert "2/10" in page.all_text and "5.0MiB/10.0MiB" in page.all_text and "eta 00:05" in page.all_text


def test_recent_jobs_newest_first_and_bounded() -> None:
    done = [JobInfo(f"job-{i}", "done", updated=NOW - 100 + i, blocks_total=1, blocks_resident=1)
            for i in range(RECENT_JOBS + 5)]
    failed = JobInfo("job-f", "failed", updated=NOW, reason="NoSuchBucket: gone",
                     failed=[JobFailure("b", "k", "why")])
    running, recent = pick_jobs([*done, failed, RUNNING, JobInfo("job-l", "listing", priority=5)])
    assert [j.id for j in running] == ["job-l", "job-3"]  # higher priority first
    assert len(recent) == RECENT_JOBS and recent[0].id == "job-f"
    assert recent[1].id == f"job-{RECENT_JOBS + 4}"
    page = Page(render_status([], [*done, failed], now=NOW))
    assert "no live workers" in page.all_text and "NoSuchBucket: gone" in page.all_text
    assert page.find("p", id="jobs-running")  # "none"
    assert len(page.find("tr", **{"class": "job-done"})) == RECENT_JOBS - 1
