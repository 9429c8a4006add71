"""SearchProgress: plain lines for logs, one redrawn line for terminals, nothing when quiet."""
import io
import time

from n2nas.searching.progress import ProgressState, SearchProgress, format_clock, format_status


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _plain(budget_s=240.0, interval_s=30.0):
    stream, clock = io.StringIO(), FakeClock()
    return SearchProgress(budget_s, stream=stream, interactive=False, interval_s=interval_s, clock=clock), stream, clock


def test_clock_format_keeps_minutes_unbounded():
    assert format_clock(723) == "12:03"
    assert format_clock(3600) == "60:00"
    assert format_clock(-3) == "0:00"


def test_status_line_names_phase_budget_children_and_best():
    line = format_status(ProgressState("shared training", 3, 10, 723.4, 48, 2, 0.7123, 3.1e6), 3600)
    assert line == "search | shared training 3/10 | 12:03 / 60:00 | 48 scored, 2 failed | best 0.712 at 3.10 MFLOPs"
    # no time budget: elapsed only; nothing scored yet
    line = format_status(ProgressState("warm-up", elapsed_s=65), None)
    assert "1:05 elapsed" in line and "/" not in line and "best -" in line and "failed" not in line
    assert format_status(ProgressState("warm-up"), None, label="search[random]").startswith("search[random] | warm-up")


def test_plain_mode_prints_one_line_per_phase_change_and_throttles_the_rest():
    progress, stream, clock = _plain(interval_s=30)
    progress.phase("preparing data", 0, 3)          # first line
    for k in range(1, 4):                            # counter updates within the interval: no new line
        clock.now += 1
        progress.phase("preparing data", k, 3)
    progress.phase("warm-up")                        # phase change: a line at once
    for s in range(10):                              # 10 s of updates, shorter than the interval
        clock.now += 1
        progress.elapsed(10 + s)
    clock.now += 25                                  # past the interval: the next update prints
    progress.scored(4, 1, 0.5, 2e6)
    progress.close()                                 # nothing new since the last line: no extra line
    out = stream.getvalue()
    lines = out.splitlines()
    assert "\r" not in out
    assert len(lines) == 3, out
    assert lines[0].startswith("search | preparing data 0/3 | 0:00 / 4:00")
    assert "warm-up" in lines[1]
    assert "4 scored, 1 failed" in lines[2] and "best 0.500 at 2.00 MFLOPs" in lines[2]


def test_plain_mode_close_prints_the_final_state_once():
    progress, stream, clock = _plain()
    progress.phase("derive")
    clock.now += 1
    progress.scored(7, 0, 0.61, None)
    progress.close()
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "7 scored" in lines[1] and "best 0.610" in lines[1] and "MFLOPs" not in lines[1]


def test_elapsed_comes_from_the_loop_not_from_our_start():
    # a resumed search: 100 s were spent before this process started
    progress, stream, clock = _plain(budget_s=None)
    progress.elapsed(100.0)
    assert "1:40 elapsed" in stream.getvalue()
    clock.now += 5  # between reports the clock moves on from the loop's last value
    assert "1:45 elapsed" in progress.line()


def test_interactive_mode_redraws_one_line_in_place_at_most_a_few_times_a_second():
    stream, clock = io.StringIO(), FakeClock()
    progress = SearchProgress(3600, stream=stream, interactive=True, clock=clock, ticker=False)
    progress.phase("shared training")
    for i in range(100):                 # 100 updates within one second
        clock.now += 0.01
        progress.scored(i, 0, 0.1, 1e6)
    progress.phase("controller")         # a long status, then a shorter one: the leftovers must be blanked
    clock.now += 1
    progress.scored(100, 0, None, None)
    progress.elapsed(61.0)
    progress.close()
    out = stream.getvalue()
    draws = out.count("\r")
    assert 2 <= draws <= 7, out          # 1 s of updates drew at most ~4 times, plus the final redraw
    assert out.endswith("\n") and out.count("\n") == 1
    frames = out.rstrip("\n").split("\r")[1:]
    assert all(len(f) >= len(prev.rstrip()) for prev, f in zip(frames, frames[1:]))
    assert frames[-1].startswith("search | controller | 1:01 / 60:00 | 100 scored | best -")


def test_interactive_ticker_draws_a_late_update_and_stops_on_close():
    stream = io.StringIO()
    progress = SearchProgress(None, stream=stream, interactive=True)
    progress.phase("shared training")
    progress.scored(3, 0, 0.4, None)     # too soon after the first draw: left to the ticker
    deadline = time.monotonic() + 5
    while "3 scored" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "3 scored" in stream.getvalue()
    progress.close()
    assert not progress._thread.is_alive()
    size = len(stream.getvalue())
    time.sleep(0.3)
    assert len(stream.getvalue()) == size  # nothing drawn after close


def test_quiet_prints_nothing():
    stream = io.StringIO()
    progress = SearchProgress(60, enabled=False, stream=stream, interactive=True)
    progress.phase("warm-up")
    progress.elapsed(3)
    progress.scored(1, 0, 0.2, 1e6)
    progress.close()
    assert stream.getvalue() == ""
    assert progress._thread is None


def test_interactive_defaults_to_the_stream_being_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert SearchProgress(None, stream=Tty(), ticker=False).interactive is True
    assert SearchProgress(None, stream=io.StringIO()).interactive is False


def test_a_search_given_a_string_labels_its_status_lines_with_it():
    from n2nas.searching.loop import SearchConfig, search_progress

    assert search_progress("search[random]", SearchConfig()).line().startswith("search[random] | ")
    assert search_progress(True, SearchConfig()).line().startswith("search | ")
    assert not search_progress(False, SearchConfig()).enabled
