"""Actor-critic networks of the JAX-native trainer (equinox), their action distributions
(distrax), and the small policy file a trained agent is saved as.

One place for what a trained JAX agent is::

    net = ActorCritic.create(key, NetSpec.of(task, params, net_arch=(64, 64)))
    dist = net.dist(obs_norm)                # distrax: sample / log_prob / entropy
    value = net.value(obs_norm)
    a = net.deterministic(obs_norm)          # the mean (Box, clipped) or the mode (MultiDiscrete)

:class:`NetSpec` is the network's static description (sizes, activation, the action
space's kind and bounds): it alone defines the structure, so two agents with the same
spec share compiled code and their weights are data. :class:`ObsNorm` is the running
mean and variance of the observations (SB3's ``VecNormalize`` convention: normalise,
then clip). :func:`save_policy` / :func:`load_policy_file` write and read
``policy.npz``: weights, observation statistics and the spec, no optimiser state.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import distrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ACTIVATIONS", "ActorCritic", "MLP", "NetSpec", "ObsNorm", "load_policy_file",
           "save_policy"]

#: activation name -> function
ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu, "elu": jax.nn.elu, "gelu": jax.nn.gelu,
               "silu": jax.nn.silu}
#: logits of the padding entries of a MultiDiscrete component with fewer choices
_PAD_LOGIT = -1e9


@dataclasses.dataclass(frozen=True)
class NetSpec:
    """The static shape of an actor-critic: ``obs_dim``; ``kind`` ``"box"`` (a diagonal
    Gaussian, actions clipped to ``[low, high]`` when applied) or ``"multidiscrete"``
    (one categorical per component, ``nvec`` choices each); hidden ``net_arch`` (layer
    sizes, shared by actor and critic, separate weights); ``activation``;
    ``log_std_init`` (Box: the initial log standard deviation, in action units)."""

    obs_dim: int
    kind: str
    act_dim: int
    low: tuple = ()
    high: tuple = ()
    nvec: tuple = ()
    net_arch: tuple = (64, 64)
    activation: str = "tanh"
    log_std_init: float = -1.0

    def __post_init__(self):
        if self.kind not in ("box", "multidiscrete"):
            raise ValueError(f"kind: {self.kind!r}; allowed: box, multidiscrete")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation: {self.activation!r}; allowed: "
                             f"{', '.join(ACTIVATIONS)}")
        if not self.net_arch or any(int(n) < 1 for n in self.net_arch):
            raise ValueError(f"net_arch: {self.net_arch!r}; allowed: a list of layer "
                             "sizes >= 1")

    @classmethod
    def of_space(cls, obs_dim: int, action_space, **kw) -> NetSpec:
        """The spec for a Gymnasium ``Box`` or ``MultiDiscrete`` action space."""
        from gymnasium import spaces

        if isinstance(action_space, spaces.Box):
            low = np.asarray(action_space.low, np.float32).reshape(-1)
            high = np.asarray(action_space.high, np.float32).reshape(-1)
            return cls(int(obs_dim), "box", int(low.size), tuple(low.tolist()),
                       tuple(high.tolist()), **kw)
        if isinstance(action_space, spaces.MultiDiscrete):
            nvec = tuple(int(n) for n in np.asarray(action_space.nvec).reshape(-1))
            kw.pop("log_std_init", None)
            return cls(int(obs_dim), "multidiscrete", len(nvec), nvec=nvec, **kw)
        raise ValueError(f"action space {type(action_space).__name__}: allowed Box or "
                         "MultiDiscrete")

    @classmethod
    def of(cls, task, params, **kw) -> NetSpec:
        """The spec for a heatsync task's observation and action spaces."""
        return cls.of_space(task.observation_space(params).shape[0],
                            task.action_space(params), **kw)

    @property
    def n_logits(self) -> int:
        return self.act_dim if self.kind == "box" else self.act_dim * max(self.nvec)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> NetSpec:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class MLP(eqx.Module):
    """Dense layers with an activation between them (none after the last)."""

    layers: tuple
    activation: str = eqx.field(static=True)

    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)


def _mlp(key, sizes, activation, out_gain):
    """Orthogonal weights (gain sqrt 2 inside, ``out_gain`` at the output), zero biases:
    the initialisation of SB3's and PureJaxRL's PPO."""
    keys = jax.random.split(key, len(sizes) - 1)
    layers = []
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
        gain = out_gain if i == len(sizes) - 2 else np.sqrt(2.0)
        w = jax.nn.initializers.orthogonal(gain)(k, (n_out, n_in), jnp.float32)
        layer = eqx.nn.Linear(n_in, n_out, key=k)
        layer = eqx.tree_at(lambda m: (m.weight, m.bias), layer, (w, jnp.zeros(n_out)))
        layers.append(layer)
    return MLP(tuple(layers), activation)


class ActorCritic(eqx.Module):
    """Separate actor and critic MLPs and, for Box actions, a state-independent
    log standard deviation. Every leaf is an array (the spec is static)."""

    actor: MLP
    critic: MLP
    log_std: jax.Array
    spec: NetSpec = eqx.field(static=True)

    @classmethod
    def create(cls, key, spec: NetSpec) -> ActorCritic:
        k_a, k_c = jax.random.split(key)
        hidden = tuple(int(n) for n in spec.net_arch)
        actor = _mlp(k_a, (spec.obs_dim, *hidden, spec.n_logits), spec.activation, 0.01)
        critic = _mlp(k_c, (spec.obs_dim, *hidden, 1), spec.activation, 1.0)
        n_std = spec.act_dim if spec.kind == "box" else 0
        log_std = jnp.full((n_std,), spec.log_std_init, jnp.float32)
        return cls(actor, critic, log_std, spec)

    def value(self, x):
        """The critic's value of one normalised observation."""
        return self.critic(x)[0]

    def dist(self, x):
        """The action distribution at one normalised observation."""
        out = self.actor(x)
        if self.spec.kind == "box":
            return distrax.MultivariateNormalDiag(out, jnp.exp(self.log_std))
        return distrax.Independent(distrax.Categorical(logits=self._logits(out)), 1)

    def _logits(self, out):
        m = max(self.spec.nvec)
        logits = out.reshape(self.spec.act_dim, m)
        valid = np.arange(m)[None, :] < np.asarray(self.spec.nvec)[:, None]
        return jnp.where(valid, logits, _PAD_LOGIT)

    def to_env(self, a):
        """A sampled action as the env takes it (Box: clipped into the box)."""
        if self.spec.kind == "box":
            return jnp.clip(a, np.asarray(self.spec.low), np.asarray(self.spec.high))
        return a.astype(jnp.int32)

    def deterministic(self, x):
        """The greedy action: the Gaussian's mean clipped to the box, or each
        component's most likely choice."""
        out = self.actor(x)
        if self.spec.kind == "box":
            return self.to_env(out)
        return jnp.argmax(self._logits(out), axis=-1).astype(jnp.int32)


class ObsNorm(eqx.Module):
    """Running mean and variance of observations (parallel-variance updates, SB3's
    ``RunningMeanStd``); :meth:`apply` normalises and clips to ``±clip``."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, dim: int) -> ObsNorm:
        return cls(jnp.zeros((dim,)), jnp.ones((dim,)), jnp.asarray(1e-4))

    def update(self, batch) -> ObsNorm:
        """Statistics after a batch (N, dim)."""
        b_mean, b_var, n = jnp.mean(batch, 0), jnp.var(batch, 0), batch.shape[0]
        delta = b_mean - self.mean
        tot = self.count + n
        mean = self.mean + delta * n / tot
        m2 = self.var * self.count + b_var * n + delta ** 2 * self.count * n / tot
        return ObsNorm(mean, m2 / tot, tot)

    def apply(self, obs, clip: float = 10.0):
        return jnp.clip((obs - self.mean) / jnp.sqrt(self.var + 1e-8), -clip, clip)


def save_policy(path: str | os.PathLike, net: ActorCritic, obs_norm: ObsNorm | None,
                meta: dict) -> None:
    """Write ``policy.npz``: the network's weights, the observation statistics
    (``None``: observations are not normalised), the spec and ``meta`` (JSON-able:
    the env, the training config, the clip of normalised observations). Atomic."""
    from heatsync._io import atomic_path

    leaves = jax.tree.leaves(net)
    arrays = {f"w{i}": np.asarray(x) for i, x in enumerate(leaves)}
    if obs_norm is not None:
        arrays.update(obs_mean=np.asarray(obs_norm.mean), obs_var=np.asarray(obs_norm.var))
    head = {"spec": net.spec.to_dict(), "n_leaves": len(leaves), **meta}
    arrays["meta"] = np.asarray(json.dumps(head))
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_policy_file(path: str | os.PathLike):
    """``(net, obs_norm or None, meta)`` from a file :func:`save_policy` wrote. Raises
    ``ValueError`` naming the file if it is not one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        meta = json.loads(str(data["meta"]))
        spec = NetSpec.from_dict(meta["spec"])
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: not a heatsync JAX policy file ({type(e).__name__}: "
                         f"{e})") from None
    skeleton = ActorCritic.create(jax.random.PRNGKey(0), spec)
    treedef = jax.tree.structure(skeleton)
    leaves = [jnp.asarray(data[f"w{i}"]) for i in range(meta["n_leaves"])]
    shapes = [x.shape for x in jax.tree.leaves(skeleton)]
    if [x.shape for x in leaves] != shapes:
        raise ValueError(f"{path}: weights do not match the spec {spec}")
    net = jax.tree.unflatten(treedef, leaves)
    norm = None
    if "obs_mean" in data:
        norm = ObsNorm(jnp.asarray(data["obs_mean"]), jnp.asarray(data["obs_var"]),
                       jnp.asarray(1.0))
    return net, norm, meta
