"""The training job's progress lines, as the job writes them and the dispatcher reads them back."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cluster.training.progress import note_line, parse_events, progress_line
from jobs.train import ProgressLog


def test_log_lines_become_deduplicated_events() -> None:
    lines = ["plan: method=lora (full-precision base, float32 compute, optim adamw_torch) on CPU; ...",
             "some library warning",
             "progress event=train step=5 total=20 loss=1.2345 lr=2.000e-04 tokens=900 tokens_per_s=310 "
             "elapsed_s=3.0 eta_s=9.0",
             "progress event=eval step=5 total=20 eval_loss=1.1000 tokens=900 tokens_per_s=300 elapsed_s=3.1 eta_s=9",
             "refused: d.jsonl is invalid: line 3: missing field 'output'"]
    events = parse_events(lines)
    assert [key for key, _ in events] == ["plan", "step:5", "eval:5", "refused"]
    step = events[1][1]
    assert step["type"] == "metrics" and step["message"] == "Step 5/20: training loss=1.2345"
    assert step["data"] == {"step": 5, "total_steps": 20, "train_loss": 1.2345, "tokens_per_s": 310.0,
                            "eta_s": 9.0, "learning_rate": 2e-4, "tokens": 900.0}
    assert events[2][1]["data"]["valid_loss"] == 1.1
    assert events[3][1]["level"] == "error" and "line 3" in events[3][1]["message"]
    assert parse_events(lines) == events  # replaying the same log gives the same keys


def test_written_lines_parse_back_to_what_was_written() -> None:
    lines = [note_line("plan", "method=qlora on GPU"), note_line("dataset", "d.jsonl: 9 train / 1 eval examples"),
             progress_line({"event": "train", "step": 7, "total": 30, "loss": 0.25, "eval_loss": None,
                            "lr": 0.000123, "tokens": 4096, "tokens_per_s": 812.5, "eta_s": 41.0}),
             note_line("refused", "line 2: not valid JSON")]
    assert "eval_loss" not in lines[2]  # None fields are left out, not written as None
    events = dict(parse_events(lines))
    assert events["plan"]["message"] == "plan: method=qlora on GPU"
    assert events["dataset"]["message"].endswith("9 train / 1 eval examples")
    assert events["step:7"]["data"] == pytest.approx({"step": 7, "total_steps": 30, "train_loss": 0.25,
                                                      "learning_rate": 0.000123, "tokens": 4096.0,
                                                      "tokens_per_s": 812.5, "eta_s": 41.0}, rel=1e-3)
    assert events["refused"] == {"message": "Training data refused: line 2: not valid JSON", "level": "error"}


def test_the_training_callbacks_lines_become_step_and_eval_events(capsys: pytest.CaptureFixture[str]) -> None:
    log = ProgressLog()
    state = SimpleNamespace(global_step=3, max_steps=12, num_input_tokens_seen=1500)
    log.on_log(state, {"loss": 2.5, "learning_rate": 1e-4, "grad_norm": 0.7})
    state.global_step = 4
    log.on_log(state, {"eval_loss": 2.1})
    log.on_log(state, {"train_runtime": 9.0})  # neither loss nor eval loss: no line
    events = parse_events(capsys.readouterr().out.splitlines())
    assert [key for key, _ in events] == ["step:3", "eval:4"]
    assert events[0][1]["data"]["train_loss"] == 2.5 and events[0][1]["data"]["total_steps"] == 12
    assert events[1][1]["data"]["valid_loss"] == 2.1 and events[1][1]["message"] == "Step 4/12: validation loss=2.1000"
    assert log.history[0]["loss"] == 2.5 and len(log.history) == 1


def test_non_finite_numbers_in_a_log_line_are_null_and_a_stop_is_an_error_event() -> None:
    events = dict(parse_events(["progress event=train step=3 total=9 loss=nan lr=inf tokens=12 eta_s=-inf",
                                "failed: the training loss became nan at step 3 of 9"]))
    assert events["step:3"]["data"] == {"step": 3, "total_steps": 9, "train_loss": None, "learning_rate": None,
                                        "tokens": 12.0, "eta_s": None}
    assert events["failed"]["level"] == "error" and "loss became nan" in events["failed"]["message"]


def test_jsonb_parameters_hold_no_nan() -> None:
    from cluster.store.db import jsonb

    assert jsonb({"a": float("nan"), "b": [1.5, float("inf")], "c": {"d": -float("inf")}}) == \
        '{"a": null, "b": [1.5, null], "c": {"d": null}}'
    assert jsonb(None) is None and jsonb({"x": 1}) == '{"x": 1}'


def test_a_loss_that_goes_non_finite_stops_training_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    log = ProgressLog()
    state = SimpleNamespace(global_step=5, max_steps=12, num_input_tokens_seen=100)
    log.on_log(state, {"loss": 1.2})
    assert log.diverged is None
    log.on_log(state, {"loss": float("nan")})
    assert log.diverged and "training loss became nan at step 5 of 12" in log.diverged
    control = SimpleNamespace(should_training_stop=False)
    log.as_callback().on_log(None, state, control, logs={"loss": 0.5})
    assert control.should_training_stop  # the callback stops the trainer once it has diverged
