"""PyTorch backend: ``nn.Sequential`` networks, ``torch.optim.Adam``, the tutorial training loop.

Layouts: ``nn.Linear`` stores its weight ``(out, in)``; the canonical kernel is ``(in, out)``,
so the weight is the kernel transposed at the boundary. The ``nn.Sequential`` index of every
layer equals its index in the spec, so ``state_dict`` keys (``0.weight``) line up with
canonical names (``generator.0.kernel``).

Modes: ``eager`` (default) and ``compile`` (``torch.compile`` of both networks).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..losses import LossOps, discriminator_loss, generator_loss
from ..params import ParamTree
from ..spec import Dense, Flatten, GANSpec, Layer, LeakyReLU, ReLU, Reshape, Sigmoid, Tanh
from .base import Backend, OptimizerState, TrainBatch


def _softplus(x: torch.Tensor) -> torch.Tensor:
    # F.softplus returns x itself past threshold=20 (2e-9 off); logaddexp is exact and
    # its gradient is sigmoid(x) everywhere, 0 included.
    return torch.logaddexp(x, torch.zeros((), dtype=x.dtype, device=x.device))


TORCH_OPS = LossOps(softplus=_softplus, mean=torch.mean, relu=torch.relu)

# What a port written with torch's usual BCE gets: nn.BCELoss on sigmoid probabilities (the
# PyTorch DCGAN tutorial), whose log is clamped at -100. softplus(l) = -log(1 - sigmoid(l)).
TORCH_DEFAULT_BCE_OPS = LossOps(
    softplus=lambda x: -torch.clamp(torch.log(1 - torch.sigmoid(x)), min=-100.0), mean=torch.mean, relu=torch.relu
)


class Unflatten(nn.Module):
    """Reshape each sample to ``shape`` (canonical channels-last order)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class BF16Linear(nn.Linear):
    """``nn.Linear`` with the spec's bf16 matmul: operands and product in bfloat16, bias in
    float32 (see :class:`~gan_backends.spec.Numerics`). Same parameters, same state_dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x.bfloat16() @ self.weight.bfloat16().T).to(x.dtype)
        return y if self.bias is None else y + self.bias


def build_layer(layer: Layer, in_shape: tuple[int, ...], bf16: bool = False) -> nn.Module:
    if isinstance(layer, Dense):
        return (BF16Linear if bf16 else nn.Linear)(in_shape[0], layer.units, bias=layer.use_bias)
    if isinstance(layer, LeakyReLU):
        return nn.LeakyReLU(negative_slope=layer.slope)
    if isinstance(layer, ReLU):
        return nn.ReLU()
    if isinstance(layer, Tanh):
        return nn.Tanh()
    if isinstance(layer, Sigmoid):
        return nn.Sigmoid()
    if isinstance(layer, Reshape):
        return Unflatten(layer.shape)
    if isinstance(layer, Flatten):
        return nn.Flatten()
    raise NotImplementedError(f"torch backend cannot build {layer.describe()}")


def build_network(spec: GANSpec, net: str) -> nn.Sequential:
    bf16 = spec.numerics.matmul_precision == "bf16"
    return nn.Sequential(
        *(build_layer(layer, s[0], bf16) for layer, s in zip(spec.layers(net), spec.layer_shapes(net)))
    )


def to_torch_layout(name: str, value: np.ndarray) -> np.ndarray:
    """Canonical array -> torch layout: ``nn.Linear.weight`` is the kernel transposed."""
    return value.T if name.endswith(".kernel") else value


# A transpose is its own inverse.
from_torch_layout = to_torch_layout


def select_device(requested: str | None) -> torch.device:
    if requested is not None:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _raise_recompile_limit(limit: int = 64) -> None:
    """Dynamo keys its cache on the code object, and every ``nn.Sequential.forward`` shares one:
    G and D, grad and no-grad, D frozen or not, float32 and float64 are each a variant. Past the
    default limit of 8, dynamo silently runs eager; raise it so ``compile`` stays compiled."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), limit))


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def apply_precision(spec: GANSpec) -> None:
    """TF32 on or off for matmuls and cuDNN convs, from the spec (process-wide in torch)."""
    tf32 = spec.numerics.matmul_precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


class TorchBackend(Backend):
    loss_ops = TORCH_OPS

    @staticmethod
    def from_numpy(array: np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(array))

    name = "torch"
    modes = ("eager", "compile")

    def __init__(self, spec: GANSpec, params: ParamTree, *, mode: str | None = None, device: str | None = None):
        super().__init__(spec, params, mode=mode, device=device)
        apply_precision(spec)
        self._device = select_device(device)
        self._torch_dtype = getattr(torch, spec.numerics.dtype)
        self.G = build_network(spec, "generator").to(self._device, self._torch_dtype)
        self.D = build_network(spec, "discriminator").to(self._device, self._torch_dtype)
        self._G, self._D = self.G, self.D
        if self.mode == "compile":
            _raise_recompile_limit()
            self._G, self._D = torch.compile(self.G), torch.compile(self.D)
        self.set_params(params)

    @classmethod
    def framework_version(cls) -> str:
        return f"torch {torch.__version__}"

    @classmethod
    def default_device(cls) -> str:
        return describe_device(select_device(None))

    @property
    def device(self) -> str:
        return describe_device(self._device)

    # -- parameters ----------------------------------------------------------------------
    def _named(self) -> dict[str, nn.Parameter]:
        """Canonical name -> torch parameter."""
        out = {}
        for net, module in (("generator", self.G), ("discriminator", self.D)):
            for tname, param in module.named_parameters():
                idx, attr = tname.split(".")
                short = {"weight": "kernel", "bias": "bias"}[attr]
                out[f"{net}.{idx}.{short}"] = param
        return out

    def set_params(self, params: ParamTree) -> None:
        named = self._named()
        with torch.no_grad():
            for name, param in named.items():
                value = np.ascontiguousarray(to_torch_layout(name, params[name]), dtype=self.dtype)
                param.copy_(torch.from_numpy(value))
        self.g_opt = self._make_adam(self.G, self.spec.g_optimizer)
        self.d_opt = self._make_adam(self.D, self.spec.d_optimizer)

    def _make_adam(self, module: nn.Module, opt) -> torch.optim.Adam:
        # fused=True: one kernel for all parameters; same update as the for-loop form within
        # rounding, and the fastest on both CPU and CUDA (see shared performance notes).
        return torch.optim.Adam(
            module.parameters(),
            lr=opt.lr,
            betas=(opt.beta1, opt.beta2),
            eps=opt.eps,
            weight_decay=opt.weight_decay,
            fused=True,
        )

    def get_params(self) -> ParamTree:
        return self._canonical({name: param for name, param in self._named().items()})

    def _optimizers(self) -> dict[str, tuple[torch.optim.Adam, list[str]]]:
        """Network -> (its optimiser, canonical names in the optimiser's parameter order)."""
        names = list(self._named())
        return {
            net: (opt, [n for n in names if n.startswith(net + ".")])
            for net, opt in (("generator", self.g_opt), ("discriminator", self.d_opt))
        }

    def get_optimizer_state(self) -> OptimizerState:
        named = self._named()
        steps, m, v = {}, {}, {}
        for net, (opt, names) in self._optimizers().items():
            steps[net] = 0
            for name in names:
                state = opt.state.get(named[name], {})
                if not state:  # no step taken yet: torch creates the buffers lazily
                    m[name] = v[name] = torch.zeros_like(named[name])
                    continue
                steps[net] = int(state["step"])
                m[name], v[name] = state["exp_avg"], state["exp_avg_sq"]
        return OptimizerState(steps, {"m": self._canonical(m), "v": self._canonical(v)})

    def set_optimizer_state(self, state: OptimizerState) -> None:
        # Through load_state_dict, torch's public path: it moves buffers to each parameter's
        # device and dtype and gives `step` the type the fused kernel wants.
        for net, (opt, names) in self._optimizers().items():
            saved = opt.state_dict()
            step = state.steps[net]
            per_param = {}
            if step > 0:
                for i, name in enumerate(names):
                    per_param[i] = {
                        "step": torch.tensor(float(step)),
                        "exp_avg": torch.from_numpy(
                            np.ascontiguousarray(to_torch_layout(name, state.slots["m"][name]))
                        ),
                        "exp_avg_sq": torch.from_numpy(
                            np.ascontiguousarray(to_torch_layout(name, state.slots["v"][name]))
                        ),
                    }
            opt.load_state_dict({"state": per_param, "param_groups": saved["param_groups"]})

    @torch.no_grad()
    def activations(self, net: str, x: np.ndarray) -> list[np.ndarray]:
        h, outputs = self._tensor(x), []
        for module in self.G if net == "generator" else self.D:
            h = module(h)
            outputs.append(h.cpu().numpy())
        return outputs

    @staticmethod
    def _canonical(tensors: dict[str, torch.Tensor]) -> ParamTree:
        return {
            name: np.ascontiguousarray(from_torch_layout(name, t.detach().cpu().numpy())) for name, t in tensors.items()
        }

    # -- computation ---------------------------------------------------------------------
    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self._as_input(array)).to(self._device)

    @torch.no_grad()
    def generate(self, z: np.ndarray) -> np.ndarray:
        return self._G(self._tensor(z)).cpu().numpy()

    @torch.no_grad()
    def discriminate(self, x: np.ndarray) -> np.ndarray:
        return self._D(self._tensor(x)).cpu().numpy()

    def _d_loss(self, real: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake = self._G(z)
        return discriminator_loss(self.loss_ops, self._D(real), self._D(fake), self.spec.loss)

    def _g_loss(self, z: torch.Tensor) -> torch.Tensor:
        # D is held fixed: no weight gradients are computed for it during the G update.
        self.D.requires_grad_(False)
        try:
            return generator_loss(self.loss_ops, self._D(self._G(z)), self.spec.loss)
        finally:
            self.D.requires_grad_(True)

    def loss_terms(self, real: np.ndarray, z: np.ndarray) -> dict[str, float]:
        with torch.no_grad():
            real_t, z_t = self._tensor(real), self._tensor(z)
            terms = self._d_loss(real_t, z_t)
            terms["g_loss"] = generator_loss(self.loss_ops, self._D(self._G(z_t)), self.spec.loss)
        return {k: float(v) for k, v in terms.items()}

    def gradients(self, real: np.ndarray, z: np.ndarray) -> tuple[dict[str, float], ParamTree]:
        real_t, z_t = self._tensor(real), self._tensor(z)
        named = self._named()
        g_names = [n for n in named if n.startswith("generator.")]
        d_names = [n for n in named if n.startswith("discriminator.")]
        terms = self._d_loss(real_t, z_t)
        d_grads = torch.autograd.grad(terms["d_loss"], [named[n] for n in d_names])
        terms["g_loss"] = self._g_loss(z_t)
        g_grads = torch.autograd.grad(terms["g_loss"], [named[n] for n in g_names])
        grads = self._canonical(dict(zip([*g_names, *d_names], [*g_grads, *d_grads])))
        return {k: float(v.detach()) for k, v in terms.items()}, {n: grads[n] for n in named}

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        batch.validate(self.spec)
        real, z_d, z_g = self._tensor(batch.real), self._tensor(batch.z_d), self._tensor(batch.z_g)
        terms = self._train_step(real, z_d, z_g)
        return {k: float(v) for k, v in terms.items()}

    def _train_step(self, real: torch.Tensor, z_d: torch.Tensor, z_g: torch.Tensor) -> dict[str, torch.Tensor]:
        """The tutorial loop: n_critic D updates on detached fakes, then one G update."""
        for i in range(self.spec.n_critic):
            terms = self._d_loss(real[i], z_d[i])
            self.d_opt.zero_grad(set_to_none=True)
            terms["d_loss"].backward()
            self.d_opt.step()
        g_loss = self._g_loss(z_g)
        self.g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_opt.step()
        return {**{k: v.detach() for k, v in terms.items()}, "g_loss": g_loss.detach()}
