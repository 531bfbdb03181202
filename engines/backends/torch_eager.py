"""Torch eager backend: for development and as the parity reference of every export.

The wrapped module takes the engine's inputs as positional tensors in signature order and
returns its outputs as a tuple in signature order (the same contract the ONNX export uses),
so one sample can be fed to both and compared output by output.
"""

from __future__ import annotations

import numpy as np

from engines.engine import Engine
from engines.spec import Signature


class TorchEngine(Engine):
    def __init__(
        self,
        name: str,
        module: object,
        signature: Signature,
        *,
        random_weights: bool,
        device: str = "cpu",
        threads: int = 0,
    ) -> None:
        import torch

        super().__init__(name, signature, random_weights=random_weights)
        if threads > 0:
            torch.set_num_threads(threads)
        self._torch = torch
        self._device = torch.device(device)
        self.module = module.to(self._device).eval()  # type: ignore[attr-defined]

    @property
    def backend(self) -> str:
        return f"torch:{self._device.type}"

    @property
    def device(self) -> str:
        return str(self._device)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self._device)
                for n in self.signature.input_names]
        with torch.inference_mode():
            outputs = self.module(*args)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        names = self.signature.output_names
        if len(outputs) != len(names):
            raise RuntimeError(
                f"{self.name}: torch module returned {len(outputs)} outputs, signature "
                f"declares {names}"
            )
        return {n: o.detach().float().cpu().numpy() if o.is_floating_point()
                else o.cpu().numpy() for n, o in zip(names, outputs, strict=True)}
