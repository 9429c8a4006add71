"""Int8 models: quantization-aware training (QAT), post-training static and dynamic quantization.

Uses ``torch.ao.quantization`` FX graph mode (``prepare_qat_fx`` / ``prepare_fx`` / ``convert_fx``) with the
x86 (fbgemm) backend, because it is what the installed torch (2.13, CPU build) ships and it works on the ECG
children: Conv1d/Linear/ReLU/pooling/adds run as int8 kernels. torch marks ``torch.ao.quantization`` deprecated
in favour of torchao's pt2e flow; torchao is not installed here, so its deprecation warnings are silenced in
this module only. Pre-activation batch norms (BN -> act -> conv, with skip sums in between) cannot be folded
into a convolution; FX keeps them in float with a dequantize/quantize pair around them.

Int8 kernels run on the CPU only. An int8 model folder holds the converted state dict in ``model.pt``
(quantized tensors and scales; ``weights_only=True`` loads it) and ``quantization.json``; :func:`rebuild_int8`
re-creates the int8 module from the float architecture before those weights are loaded.
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import nn

from n2nas.errors import ConfigError
from n2nas.presets import preset

QUANT_FILE = "quantization.json"


@dataclass(frozen=True)
class QATConfig:
    """Fake-quantized int8 training; observers and batch-norm statistics freeze after the given fractions of
    the planned epochs so the last epochs fine-tune against fixed quantization ranges."""

    backend: str = "x86"
    freeze_observers: float = 0.7
    freeze_bn: float = 0.8

    def __post_init__(self):
        if self.backend not in ("x86", "fbgemm", "qnnpack", "onednn"):
            raise ConfigError("QATConfig.backend", f"unknown quantization backend {self.backend!r}")

    @staticmethod
    @preset()
    def default() -> "QATConfig":
        """x86 backend, observers frozen at 70% and BN statistics at 80% of the planned epochs."""
        return QATConfig()


@contextlib.contextmanager
def _quiet():
    """torch.ao.quantization warns about its own deprecation on every call; the rest stay visible."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quant_min and quant_max.*")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
        warnings.filterwarnings("ignore", message=".*must run observer before calling calculate_qparams.*")
        yield


def _engine(backend: str) -> None:
    # the quantized engine is process-wide torch state; every entry point sets it to the model's backend
    if backend in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = backend


def prepare_qat(model: nn.Module, example: torch.Tensor, config: QATConfig = QATConfig()) -> nn.Module:
    """``model`` (train mode) with fake-quant observers inserted; train it as usual, then :func:`convert`."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    _engine(config.backend)
    with _quiet():
        return prepare_qat_fx(model.train(), get_default_qat_qconfig_mapping(config.backend), (example,))


def set_qat_phase(model: nn.Module, epoch_fraction: float, config: QATConfig) -> None:
    """Freeze observers / BN statistics once training is past the configured fractions."""
    from torch.ao.quantization import disable_observer

    if epoch_fraction >= config.freeze_observers:
        model.apply(disable_observer)
    if epoch_fraction >= config.freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()  # running statistics stop updating (call after model.train() at each epoch start)


def convert(prepared: nn.Module) -> nn.Module:
    """The int8 model of a QAT- or calibration-prepared model (a copy, CPU, eval mode)."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with _quiet():
        return convert_fx(copy.deepcopy(prepared).cpu().eval())


def quantize_static(model: nn.Module, batches: Iterable[torch.Tensor], backend: str = "x86") -> nn.Module:
    """Post-training static int8 quantization: observe activation ranges on ``batches``, then convert."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    batches = list(batches)
    if not batches:
        raise ConfigError("calibration", "post-training static quantization needs at least one batch")
    _engine(backend)
    with _quiet():
        prepared = prepare_fx(copy.deepcopy(model).cpu().eval(), get_default_qconfig_mapping(backend),
                              (batches[0],))
        with torch.no_grad():
            for x in batches:
                prepared(x)
    return convert(prepared)


def quantize_dynamic(model: nn.Module) -> nn.Module:
    """Post-training dynamic quantization: int8 weights for Linear/LSTM, activations quantized on the fly.
    Convolutions stay float, so on a convolutional net only the classifier changes."""
    with _quiet():
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).cpu().eval(),
                                                      {nn.Linear, nn.LSTM}, dtype=torch.qint8)


def rebuild_int8(model: nn.Module, info: dict[str, Any]) -> nn.Module:
    """An int8 module with the architecture of float ``model`` and placeholder scales, ready for
    ``load_state_dict`` of a saved int8 state (``info`` is ``quantization.json``)."""
    mode = info.get("mode")
    example = torch.zeros(tuple(info["example_shape"]))
    backend = info.get("backend", "x86")
    if mode == "qat":
        prepared = prepare_qat(model, example, QATConfig(backend=backend))
        return convert(prepared)
    if mode == "static":
        return quantize_static(model, [example], backend)
    if mode == "dynamic":
        return quantize_dynamic(model)
    raise ConfigError(QUANT_FILE, f"unknown quantization mode {mode!r}")


def load_int8_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``model.load_state_dict(state)`` without the deprecation noise of quantized tensors."""
    with _quiet():
        model.load_state_dict(state)


def is_quantized(model: nn.Module) -> bool:
    """Whether ``model`` holds int8 modules (those run on the CPU only)."""
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())
