"""FLOPs hand counts, energy meters (fake RAPL powercap tree, fake NVML), the power sampler and latency."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from n2nas.measure.cost import pipeline_cost
from n2nas.measure.energy import (CompositeMeter, FlopsEstimateMeter, NVMLMeter, RAPLMeter, UnmeasuredMeter,
                                  pick_meter, rapl_zones)
from n2nas.measure.flops import count_flops, count_params
from n2nas.measure.latency import LatencyConfig, measure_latency_ms
from n2nas.measure.sampler import PowerSampler


# ---------------------------------------------------------------- FLOPs: 2 x multiply-adds, by hand
def test_conv1d_flops_equal_hand_count():
    conv = nn.Conv1d(3, 8, kernel_size=5, stride=2, padding=2)
    l_out = (100 + 2 * 2 - 5) // 2 + 1  # 50
    assert count_flops(conv, (4, 3, 100)) == 2 * 4 * 3 * 8 * 5 * l_out
    grouped = nn.Conv1d(8, 8, kernel_size=3, padding=1, groups=8)  # depthwise: C_in/groups = 1
    assert count_flops(grouped, (1, 8, 64)) == 2 * 1 * 8 * 3 * 64


def test_linear_flops_equal_hand_count():
    assert count_flops(nn.Linear(10, 7), (4, 10)) == 2 * 4 * 10 * 7
    assert count_flops(nn.Linear(10, 7), (2, 5, 10)) == 2 * 2 * 5 * 10 * 7  # applied per time step


class _LSTMNet(nn.Module):
    def __init__(self, bidirectional: bool = False):
        super().__init__()
        self.lstm = nn.LSTM(12, 32, num_layers=2, batch_first=True, bidirectional=bidirectional)

    def forward(self, x):
        return self.lstm(x)[0]


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_lstm_flops_equal_hand_count(device):
    b, t, i, h = 2, 50, 12, 32
    per_step = 4 * h * (i + h) + 4 * h * (h + h)  # multiply-adds of the four gates, layer 1 + layer 2
    assert count_flops(_LSTMNet(), (b, t, i), device=device) == 2 * b * t * per_step
    per_step_bi = 2 * (4 * h * (i + h)) + 2 * (4 * h * (2 * h + h))  # layer 2 reads both directions
    assert count_flops(_LSTMNet(True), (b, t, i), device=device) == 2 * b * t * per_step_bi


def test_gru_and_small_network_sum_their_layers():
    gru = nn.GRU(12, 16, batch_first=True)
    assert count_flops(gru, (1, 20, 12)) == 2 * 20 * 3 * 16 * (12 + 16)
    net = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                        nn.Linear(4, 2))
    assert count_flops(net, (1, 1, 30)) == 2 * 1 * 4 * 3 * 30 + 2 * 4 * 2
    assert count_params(net) == 4 * 3 + 4 + 4 * 2 + 2


def test_pipeline_cost_per_window_record_and_second(capsys, tmp_path):
    from n2nas.models.folder import build_model
    from n2nas.cli import main
    from n2nas.space import Pipeline
    from search_spaces import get_space

    space = get_space("ecg-small").space
    sample = {**space.default_sample(), "fs": 100, "window": "crop:5"}
    pipe = Pipeline("ecg-small", sample, {"n_leads": 1, "classes": ["N", "A", "O", "~"]})
    cost = pipeline_cost(pipe, record_seconds=30.0)
    model = build_model(pipe)
    assert cost["input_shape"] == [1, 500]
    assert cost["flops_per_window"] == count_flops(model, (1, 1, 500))
    assert cost["params"] == count_params(model)
    # 5 s crops stepping 2.5 s over 30 s: starts 0, 2.5, ..., 25 -> 11 windows
    assert cost["windows_per_record"] == 11
    assert cost["flops_per_record"] == 11 * cost["flops_per_window"]
    assert cost["flops_per_second"] == pytest.approx(cost["flops_per_record"] / 30.0)
    pipe.save(tmp_path / "p.json")
    assert main(["flops", str(tmp_path / "p.json"), "--record-seconds", "30"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["flops_per_record"] == cost["flops_per_record"] and printed["params"] == cost["params"]



def test_pipeline_cost_of_a_tabular_ehr_pipeline_counts_one_row_per_record(capsys, tmp_path):
    from n2nas.models.folder import build_model
    from n2nas.cli import main
    from n2nas.space import Pipeline
    from search_spaces import get_space

    space = get_space("ehr-mlp-small").space
    pipe = Pipeline("ehr-mlp-small", space.default_sample(), {"n_leads": 20, "classes": ["a", "b", "c"]})
    cost = pipeline_cost(pipe)
    model = build_model(pipe)
    assert cost["input_shape"] == [20] and cost["windows_per_record"] == 1
    assert cost["flops_per_record"] == cost["flops_per_window"] == count_flops(model, (1, 20))
    assert cost["params"] == count_params(model) and cost["flops_per_second"] is None
    pipe.save(tmp_path / "ehr.json")
    assert main(["flops", str(tmp_path / "ehr.json")]) == 0
    assert json.loads(capsys.readouterr().out)["flops_per_record"] == cost["flops_per_record"]


# ---------------------------------------------------------------- energy meters
def _zone(root: Path, name: str, label: str, energy: int | None, max_uj: int) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "name").write_text(label + "\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    if energy is not None:
        (path / "energy_uj").write_text(f"{energy}\n")
    return path


def test_rapl_sums_packages_and_dram_and_handles_wraparound(tmp_path):
    pkg = _zone(tmp_path, "intel-rapl:0", "package-0", 900, 1000)
    _zone(tmp_path, "intel-rapl:0:0", "core", 5, 1000)        # inside the package: not added again
    dram = _zone(tmp_path, "intel-rapl:0:1", "dram", 100, 10_000)
    _zone(tmp_path, "intel-rapl:1", "psys", 7, 1000)          # whole platform: would double count
    _zone(tmp_path, "intel-rapl:2", "package-1", None, 1000)  # unreadable (no energy_uj): skipped
    assert sorted(z.name for z in rapl_zones(tmp_path)) == ["dram", "package-0"]
    meter = pick_meter("cpu", rapl_root=tmp_path)
    assert isinstance(meter, RAPLMeter) and meter.source == "rapl"
    start = meter.begin()
    (pkg / "energy_uj").write_text("50\n")    # wrapped: 900 -> 1000 -> 0 -> 50 = 150 µJ
    (dram / "energy_uj").write_text("400\n")  # 300 µJ
    reading = meter.end(start)
    assert reading.joules == pytest.approx(450e-6) and reading.source == "rapl" and reading.measured


def test_no_counter_means_null_and_unmeasured(tmp_path):
    meter = pick_meter("cpu", rapl_root=tmp_path)  # an empty powercap tree
    assert isinstance(meter, UnmeasuredMeter)
    reading = meter.end(meter.begin(), flops=1e9)
    assert reading.joules is None and reading.source == "unmeasured" and not reading.measured
    if not Path("/sys/class/powercap").exists() and not torch.cuda.is_available():
        assert pick_meter("cpu").source == "unmeasured"  # this kind of machine: nothing invented


class FakeNVML:
    """Just enough of pynvml: a total-energy counter in mJ that advances by the given steps."""

    def __init__(self, counter=(1000, 3500), supported: bool = True):
        self.counter, self.supported, self.inits, self.shutdowns = list(counter), supported, 0, 0

    def nvmlInit(self):
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("gpu", index)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return ("gpu", uuid)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.supported:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return self.counter.pop(0) if len(self.counter) > 1 else self.counter[0]

    def nvmlDeviceGetPowerUsage(self, handle):
        return 250_000  # mW


def test_nvml_meter_converts_millijoules(tmp_path):
    fake = FakeNVML(counter=(0, 1000, 3500))  # first read is the constructor's support check
    meter = pick_meter("cuda:0", nvml=fake, rapl_root=tmp_path)
    assert isinstance(meter, NVMLMeter) and meter.source == "nvml"
    assert meter.end(meter.begin()).joules == pytest.approx(2.5)
    assert meter.power_w() == 250.0
    meter.close()
    assert fake.inits == fake.shutdowns == 1


def test_gpu_without_energy_counter_is_unmeasured_not_guessed(tmp_path):
    fake = FakeNVML(supported=False)
    assert pick_meter("cuda:0", nvml=fake, rapl_root=tmp_path).source == "unmeasured"
    assert fake.inits == fake.shutdowns  # the failed meter released NVML


def test_composite_and_estimate_meters(tmp_path):
    _zone(tmp_path, "intel-rapl:0", "package-0", 0, 10 ** 9)
    both = pick_meter("cuda:0", nvml=FakeNVML(counter=(0, 0, 2000)), rapl_root=tmp_path)
    assert isinstance(both, CompositeMeter) and both.source == "nvml+rapl"
    start = both.begin()
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("500000\n")
    assert both.end(start).joules == pytest.approx(2.0 + 0.5)
    est = pick_meter("cpu", joules_per_flop=2e-9, rapl_root=tmp_path)  # asked for: the estimate, nothing else
    assert isinstance(est, FlopsEstimateMeter)
    reading = est.end(est.begin(), flops=3e9)
    assert reading.source == "estimate:flops" and reading.joules == pytest.approx(6.0) and not reading.measured
    with pytest.raises(ValueError):
        est.end(None)


# ---------------------------------------------------------------- sampler and latency
def test_sampler_integrates_rapl_power_and_writes_csv(tmp_path):
    pkg = _zone(tmp_path / "rapl", "intel-rapl:0", "package-0", 0, 10 ** 12)
    times = iter([100.0, 101.0, 103.0])
    sampler = PowerSampler(tmp_path / "power.csv", None, rapl=RAPLMeter(tmp_path / "rapl"), clock=lambda: next(times))
    sampler._open()
    sampler.sample()                                    # t=100: start of the first interval
    (pkg / "energy_uj").write_text(f"{5 * 10 ** 6}\n")  # 5 J in 1 s  -> 5 W
    assert sampler.sample()["cpu_power_w"] == pytest.approx(5.0)
    (pkg / "energy_uj").write_text(f"{25 * 10 ** 6}\n")  # 20 J in 2 s -> 10 W
    sampler.sample()
    sampler.stop()
    assert sampler.joules(100.0, 103.0) == pytest.approx(25.0)  # exactly the counter's 25 J
    assert sampler.joules(100.5, 102.0) == pytest.approx(0.5 * 5 + 1.0 * 10)
    assert sampler.joules(102.0, 104.0) == pytest.approx(2 * 10.0)  # last power carried forward
    assert sampler.joules(99.0, 101.0) is None                      # before the first sample: unknown
    rows = list(csv.DictReader(open(tmp_path / "power.csv")))
    assert [r["cpu_power_w"] for r in rows] == ["", "5.0", "10.0"] and rows[-1]["energy_j"] == "25.0"


def test_sampler_thread_stops_cleanly_and_invents_no_power(tmp_path):
    sampler = PowerSampler(tmp_path / "run" / "power.csv", tmp_path / "run" / "tb", interval_s=0.02)
    with sampler:
        thread = sampler._thread
        assert thread.is_alive()
        import time

        time.sleep(0.15)
    assert not thread.is_alive() and sampler._file is None
    rows = list(csv.DictReader(open(tmp_path / "run" / "power.csv")))
    assert len(rows) >= 2 and all(r["power_w"] == "" for r in rows) and "cpu_util_pct" in rows[0]
    assert not sampler.has_power and sampler.joules(0, 1e12) is None
    assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    sampler.stop()  # twice is fine


def test_latency_is_a_positive_median_and_keeps_the_training_mode():
    model = nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4)).train()
    ms = measure_latency_ms(model, (1, 1, 64), "cpu", LatencyConfig(warmup=1, repeats=3))
    assert ms > 0 and model.training
    with pytest.raises(ValueError):
        LatencyConfig(repeats=0)
