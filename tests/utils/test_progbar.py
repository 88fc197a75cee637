"""Progbar: what it writes to a terminal and to a log, and when it stays silent."""
import io
import re

from tlkit.utils.progbar import Progbar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_one_final_line_with_the_step_weighted_mean():
    out = io.StringIO()
    bar = Progbar(10, file=out, unit_name="file")
    bar.update(2, [("loss", 1.0)])
    bar.update(5, [("loss", 0.5)])
    assert out.getvalue() == ""  # not a terminal: nothing before the end (or a 10 s heartbeat)
    bar.update(10, [("loss", 0.5)])
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("10/10 [" + "=" * 30 + "]")
    # loss over the 10 steps: (2 * 1.0 + 3 * 0.5 + 5 * 0.5) / 10
    assert "loss: 0.6000" in lines[0]
    assert re.search(r"(files/s|s/file)", lines[0])


def test_stateful_metrics_show_their_last_value_and_add_advances():
    out = io.StringIO()
    bar = Progbar(4, file=out, stateful_metrics=["acc"])
    bar.add(2, [("acc", 0.25)])
    bar.add(2, [("acc", 0.75)])
    assert "acc: 0.7500" in out.getvalue() and out.getvalue().startswith("4/4 [")


def test_a_terminal_redraws_one_line_and_ends_it():
    out = Terminal()
    bar = Progbar(10, file=out, width=10)
    bar.update(1)
    first = out.getvalue()
    assert first.startswith("\r 1/10 [>") and "ETA" in first and not first.endswith("\n")
    bar.update(10)
    assert out.getvalue()[len(first):].startswith("\r10/10 [==========]") and out.getvalue().endswith("\n")


def test_unknown_length_verbose_2_silent_and_delayed_bars():
    out = io.StringIO()
    Progbar(None, file=out).update(7, finalize=True)
    assert "7/Unknown" in out.getvalue()
    out = io.StringIO()
    bar = Progbar(3, file=out, verbose=2)
    bar.update(3, [("loss", 2.0)])
    assert out.getvalue().splitlines() == [out.getvalue().strip()] and "[" not in out.getvalue()
    assert "loss: 2.0000" in out.getvalue()
    for quiet in (Progbar(3, file=(out := io.StringIO()), verbose=0), Progbar(3, file=out, delay=3600)):
        quiet.update(3)
        assert out.getvalue() == ""
