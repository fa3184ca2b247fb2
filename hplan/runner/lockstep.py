"""Lockstep evaluation: many episodes stepped together, one batched model call per kind of call.

Each episode still runs the ordinary loop (:func:`hplan.runner.loop.run_episode`) with its own
environment and its own agent, in its own Python thread. What the episodes share is a batching
view of the world model (:class:`LockstepModel`): a call to one of the protocol's five methods
(``encode``, ``predict``, ``predict_high``, ``heads``, ``temporal_distance``) blocks until every
live episode is waiting on such a call (or has finished); then the calls of the same kind (method,
static keywords, trailing shapes and dtypes) run as one model call over all their rows, and each
episode gets its slice back. Attributes and other methods (``waypoints()``, ``calibration``, …)
pass straight through. The planner code is untouched: it sees a model that answers the protocol.

**Same episode, alone or together.** An episode's result must not depend on what else is in the
batch. On a CPU two things make a row's floats depend on its neighbours, both measured on this
project's models (torch 2.13, AVX-512, 1 and 2 threads):

* a matrix product over fewer than ~12 rows takes other kernels (1–3 rows at 1 thread, 5–11 at 2
  threads gave other bits than the same rows inside a larger batch);
* vectorised transcendental element-wise ops (sigmoid, exp, SiLU) compute the last
  ``numel mod 32`` elements of a tensor with scalar code: a guardrail head's sigmoid over 2 values
  a row gave other bits for 13–15, 20–31, … rows than the same rows inside 8,192.

So every call goes through the same batching code, whether one episode plays or fifty
(:func:`play_episodes` routes ``lockstep = 1`` through it too). The rows of all episodes' calls
of a kind are concatenated and every model call is padded (its last row repeated) to a multiple of
:data:`ROW_MULTIPLE` = 32 rows (``encode``: calls of one fixed size, :data:`ENCODE_IMAGES`): enough
rows for the matrix products' usual kernels, and a whole
number of vectors in every element-wise op, so no episode's row ever lands in a scalar tail
wherever it sits in the batch (vector lanes compute alike; measured: rows at any offset, in batches
of any size, give the same bits). ``temporal_distance``, whose arguments broadcast (a goal against
thousands of predicted latents), stacks the episodes on a new leading dimension instead, so a goal
is embedded once per episode and not once per row; an argument with fewer than :data:`MIN_ROWS`
rows is expanded along its broadcast dimensions (what the distance head then computes on the
broadcast pairs, square root, ReLU and max, is exact in any lane). The encoder runs in calls of
exactly 8 images (32 state vectors): padding each step's one frame to 32 would multiply its work, and the
built-in encoders' transcendental ops run over rows of a multiple of 32 elements.
``tests/test_runner_lockstep.py`` checks that episodes played together and alone give the same
actions, steps and summaries, at 1 and 2 torch threads. With more threads (or an odd row width at
2), an element-wise op over more than 32,768 elements splits at offsets this padding does not
align; that case is not covered.

**Not identical to the direct path.** The padding changes which kernels compute a row, so an
episode through this view can differ from the same episode with the model called directly (the
code before lockstep evaluation) by float noise, and after enough steps by an action. Episode logs
record ``lockstep`` in their header; ``hplan replay`` re-runs a log through the same view when it
was recorded through it, and directly otherwise, so older logs still verify.

Calls made with autograd on (the gradient planner's) run at once, on their own, in the calling
thread (with the same padding): their graph belongs to that episode.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any, Callable, Sequence

import torch

ROW_MULTIPLE = 32
"""Rows of every row-batched model call are padded to a multiple of this: 2 AVX-512 vectors of
float32, so no element of any tensor in the call falls in a vectorised kernel's scalar tail."""
MIN_ROWS = 16
"""Fewest rows any argument of a stacked (``temporal_distance``) call has: matrix products over
fewer take other kernels."""
ENCODE_IMAGES = 8
"""``encode`` calls run in model calls of exactly this many images (the last padded). Why a fixed
size and not a multiple: convolution and matrix-product kernels are picked by batch size, and which
sizes agree with which differs between CPUs — on an AMD EPYC (AVX2) every multiple of 4 from 8 on
gave the bits of a batch of 64, on an AVX-512 Xeon 8 and 12 did not. A call of one fixed shape
takes the same kernels every time, so an image's latent never depends on how many episodes share
the step. Padding each step's one frame to 32 would multiply the encoder's work; 8 costs little."""
ENCODE_VECTORS = ROW_MULTIPLE
"""``encode`` calls of state vectors run in model calls of exactly this many rows (see :data:`ENCODE_IMAGES`;
a state encoder is a small MLP, so 32 rows cost nothing)."""
MAX_WAIT_ROUNDS = 4
"""Rounds a call may be held back while larger groups of other calls run (see ``Lockstep._run_if_ready``)."""
MAX_ROWS = 4096
"""Most rows per model call: a larger batch is split into calls of this size. Not larger because a
row costs more in a larger call on this CPU (four rooms model, one thread: the guardrail heads 4.6–5.5
µs a row in calls of 256–8,192 rows, 8.0 in calls of 32,768; the predictor 2.3–2.9 against 4.2)."""
MAX_INPUT_ELEMENTS = 1 << 24
"""Most input elements per row-batched model call (an image batch is split before this)."""

METHODS: dict[str, tuple[str, ...]] = {
    "encode": ("obs",),
    "predict": ("z", "actions"),
    "predict_high": ("z", "codes"),
    "heads": ("z", "actions"),
    "temporal_distance": ("z", "z_goal"),
}
"""The protocol methods the view batches, with their tensor arguments in order."""
FEATURE_DIMS: dict[str, tuple[int, ...]] = {
    "encode": (-1,), "predict": (1, 2), "predict_high": (1, 2), "heads": (1, 1), "temporal_distance": (1, 1),
}
"""Trailing (per-row) dims of each tensor argument; -1: everything after the first dim (``encode``)."""
STACKED = frozenset({"temporal_distance"})
"""Methods batched by stacking episodes on a new leading dim (their arguments broadcast)."""


class LockstepCancelled(RuntimeError):
    """Raised in an episode's thread when the batch it belongs to was stopped (another episode failed)."""


@dataclass
class _Call:
    method: str
    tensors: tuple[Any, ...]
    static: tuple[tuple[str, Any], ...]
    order: int
    rounds: int = 0  # rounds this call has waited through
    result: Any = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class _Block:
    """One call's rows in a row-batched group: its tensors flattened to ``(rows, *trailing)``."""

    call: _Call
    lead: tuple[int, ...]
    rows: int
    flat: list[Any] = field(default_factory=list)


class Lockstep:
    """Coordinates the episodes' threads: gathers their model calls and runs them batched.

    ``members`` is the number of threads that will call; each calls :meth:`leave` when it has no
    more episodes to play. A round runs when every member still in is waiting on a call.
    """

    def __init__(self, model: Any, members: int) -> None:
        self.model = model
        self.live = int(members)
        self._cond = threading.Condition()
        self._waiting: list[_Call] = []
        self._cancelled: str | None = None

    def view(self) -> "LockstepModel":
        """A batching view of the model for one member thread."""
        return LockstepModel(self)

    def submit(self, call: _Call) -> Any:
        """Wait for the round, return this call's output (or raise its error)."""
        with self._cond:
            if self._cancelled is not None:
                raise LockstepCancelled(self._cancelled)
            self._waiting.append(call)
            self._run_if_ready()
            while not call.done:
                self._cond.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def leave(self) -> None:
        """A member has finished: the others no longer wait for it."""
        with self._cond:
            self.live -= 1
            self._run_if_ready()

    def cancel(self, reason: str) -> None:
        """Stop: every waiting and later call raises :class:`LockstepCancelled`."""
        with self._cond:
            self._cancelled = reason
            for call in self._waiting:
                call.error, call.done = LockstepCancelled(reason), True
            self._waiting = []
            self._cond.notify_all()

    def _run_if_ready(self) -> None:
        """When every member waits: run the largest group of same-kind calls, and every group with
        a call that has waited ``MAX_WAIT_ROUNDS`` rounds; the rest wait on.

        Why not every group at once: episodes drift out of phase (one is in its high level while
        another samples actions), and running each round's every group kept them so: with 8
        episodes, 3.5 calls a batch on four rooms. Holding the smaller groups back lets the others
        catch up with them. The wait is bounded, so an episode alone in some kind of call still
        moves on."""
        if not self._waiting or len(self._waiting) < self.live:
            return
        groups: dict[Any, list[_Call]] = {}
        for call in sorted(self._waiting, key=lambda c: c.order):
            groups.setdefault(_group_key(call), []).append(call)
        largest = max(groups.values(), key=len)
        run = [g for g in groups.values() if g is largest or max(c.rounds for c in g) >= MAX_WAIT_ROUNDS]
        for group in run:
            run_calls(self.model, group)
        self._waiting = [c for c in self._waiting if not c.done]
        for call in self._waiting:
            call.rounds += 1
        self._cond.notify_all()


class LockstepModel:
    """The world model as one episode sees it in lockstep: the protocol methods are batched with
    the other episodes' calls (see the module docstring), everything else passes through."""

    def __init__(self, lockstep: Lockstep) -> None:
        self._lockstep = lockstep
        self._model = lockstep.model
        self.order = 0  # the episode this view serves now: calls run in episode order

    @property
    def together(self) -> int:
        """How many episodes are being stepped together right now (this one included)."""
        return max(1, self._lockstep.live)

    def __getattr__(self, name: str) -> Any:
        if name in ("_model", "_lockstep"):  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self._model, name)

    def _call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        names = METHODS[method]
        tensors = [_as_tensor(a) if method == "encode" else a for a in args[: len(names)]]
        for name in names[len(tensors):]:
            tensors.append(kwargs.pop(name, None))
        call = _Call(method, tuple(tensors), tuple(sorted(kwargs.items())), self.order)
        if not _batchable(call):  # autograd on, or an argument this view does not know how to batch
            run_calls(self._model, [call], grad=True)
            if call.error is not None:
                raise call.error
            return call.result
        return self._lockstep.submit(call)

    def encode(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self._call("encode", args, kwargs)

    def predict(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self._call("predict", args, kwargs)

    def predict_high(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self._call("predict_high", args, kwargs)

    def heads(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self._call("heads", args, kwargs)

    def temporal_distance(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self._call("temporal_distance", args, kwargs)


def alone(model: Any) -> LockstepModel:
    """The view one episode played on its own gets (``lockstep = 1``; what a replay re-runs)."""
    return Lockstep(model, 1).view()


# -- running a group of calls --------------------------------------------------------------------
def run_calls(model: Any, calls: Sequence[_Call], grad: bool = False) -> None:
    """Run calls of one kind as batched model calls and hand each its output; an error goes to the
    first call (the others are cancelled), so exactly one episode reports it."""
    try:
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            if any(_empty(call) for call in calls):  # no rows, no floats to keep apart: call as given
                outputs = [getattr(model, call.method)(*call.tensors, **dict(call.static)) for call in calls]
            else:
                outputs = (_run_stacked if calls[0].method in STACKED else _run_rows)(model, calls)
        for call, output in zip(calls, outputs):
            call.result, call.done = output, True
    except Exception as exc:  # noqa: BLE001 - handed to the episode that made the call
        calls[0].error, calls[0].done = exc, True
        for call in calls[1:]:
            call.error, call.done = LockstepCancelled(f"a batched {call.method} call failed: {exc}"), True


def _run_rows(model: Any, calls: Sequence[_Call]) -> list[Any]:
    """Row-batched: every call's tensors broadcast to one lead shape and flattened to rows, all
    calls' rows concatenated, cut into model calls of at most ``MAX_ROWS`` rows, each padded to a
    multiple of ``ROW_MULTIPLE`` rows (``encode``: calls of exactly ``ENCODE_IMAGES`` images or
    ``ENCODE_VECTORS`` state vectors)."""
    method = calls[0].method
    blocks = [_flatten(call) for call in calls]
    columns = [None if blocks[0].flat[i] is None else _cat([block.flat[i] for block in blocks])
               for i in range(len(blocks[0].flat))]
    total = sum(block.rows for block in blocks)
    per_row = max(1, sum(_row_elements(c) for c in columns if c is not None))
    if method == "encode":  # one fixed call shape (see ENCODE_IMAGES): every call is one full chunk
        multiple = chunk = ENCODE_VECTORS if _is_vector_rows(columns[0]) else ENCODE_IMAGES
    else:
        multiple = ROW_MULTIPLE
        chunk = max(multiple, min(MAX_ROWS, MAX_INPUT_ELEMENTS // per_row) // multiple * multiple)
    static = dict(calls[0].static)
    outputs = []
    for start in range(0, total, chunk):
        rows = min(chunk, total - start)
        padded = _round_up(rows, multiple)
        args = [None if c is None else _pad_rows(_slice_rows(c, start, rows) if rows < total else c, padded)
                for c in columns]
        outputs.append(getattr(model, method)(*args, **static)[:rows])
    output = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
    results, start = [], 0
    for block in blocks:
        piece = output[start:start + block.rows]
        results.append(piece.reshape(*block.lead, *piece.shape[1:]))
        start += block.rows
    return results


def _run_stacked(model: Any, calls: Sequence[_Call]) -> list[Any]:
    """Stacked: calls of the same full shapes stacked on a new leading dim (their arguments keep
    broadcasting inside each episode), in calls of at most ``MAX_ROWS`` broadcast rows. An argument
    with fewer than ``MIN_ROWS`` rows is widened: alone, by repeating it along the new dim (the
    other arguments broadcast against it); together, along its own broadcast dims."""
    method = calls[0].method
    features = FEATURE_DIMS[method]
    tensors = [call.tensors for call in calls]
    leads = [t.shape[: t.ndim - f] for t, f in zip(tensors[0], features)]
    lead = _broadcast(leads)
    size = max(1, math.prod(lead))
    chunk = max(1, MAX_ROWS // size)
    static = dict(calls[0].static)
    results: list[Any] = []
    for first in range(0, len(calls), chunk):
        group = tensors[first:first + chunk]
        count = len(group)
        args = []
        for i, (feature, arg_lead) in enumerate(zip(features, leads)):
            shaped = [t[i].reshape(*(1,) * (len(lead) - len(arg_lead)), *t[i].shape) for t in group]
            args.append(torch.stack(shaped))
        args = _widen(args, lead, count)
        out = getattr(model, method)(*args, **static)
        results.extend(out[:count].unbind(0) if out.shape[0] >= count else [out[0]] * count)
    return results


def _widen(args: list[torch.Tensor], lead: tuple[int, ...], count: int) -> list[torch.Tensor]:
    """Give every stacked argument ``(count, *lead_a, *feature)`` at least ``MIN_ROWS`` rows.

    A call with fewer broadcast rows than that in all is padded along the episode dim; then each
    argument still short of rows is expanded along the fewest-rows set of its broadcast (size-1)
    dims that reaches the minimum. Why not repeat a small argument along the episode dim instead: a
    goal repeated 16 times against 3,850 predicted latents made the model's broadcast 16 times
    larger (four rooms: +1.7 ms a distance call, alone); expanding it along the candidates' dim
    embeds 385 goal rows instead of 1 (0.1 ms)."""
    size = math.prod(lead)
    if count * size < MIN_ROWS:  # a tiny call: pad every argument along the episode dim
        wide = -(-MIN_ROWS // max(1, size))
        args = [torch.cat([arg, arg[-1:].expand(wide - count, *arg.shape[1:])]) for arg in args]
        count = wide
    out = []
    for arg in args:
        rows = arg.shape[0] * math.prod(arg.shape[1:1 + len(lead)])
        if rows >= MIN_ROWS:
            out.append(arg)
            continue
        free = [d for d in range(len(lead)) if arg.shape[1 + d] == 1 and lead[d] > 1]
        best = None
        for mask in range(1, 1 << len(free)):
            dims = [free[i] for i in range(len(free)) if mask >> i & 1]
            grown = rows * math.prod(lead[d] for d in dims)
            if grown >= MIN_ROWS and (best is None or grown < best[0]):
                best = (grown, dims)
        shape = list(arg.shape)
        for d in best[1] if best is not None else []:
            shape[1 + d] = lead[d]
        out.append(arg.expand(*shape).contiguous())
    return out


def _empty(call: _Call) -> bool:
    """Some argument has no rows (e.g. no pairs to measure)."""
    values = [v for t in call.tensors if t is not None for v in (t.values() if isinstance(t, Mapping) else [t])]
    return any(v.numel() == 0 for v in values)


def _flatten(call: _Call) -> _Block:
    features = FEATURE_DIMS[call.method]
    present = [(t, f) for t, f in zip(call.tensors, features) if t is not None]
    if call.method == "encode":
        obs = call.tensors[0]
        first = next(iter(obs.values())) if isinstance(obs, Mapping) else obs
        return _Block(call, tuple(first.shape[:1]), int(first.shape[0]), [obs])
    lead = _broadcast([t.shape[: t.ndim - f] for t, f in present])
    rows = math.prod(lead)
    flat = [None if t is None else t.expand(*lead, *t.shape[t.ndim - f:]).reshape(rows, *t.shape[t.ndim - f:])
            for t, f in zip(call.tensors, features)]
    return _Block(call, tuple(lead), rows, flat)


def _group_key(call: _Call) -> Any:
    """Calls batch together when this matches: method, static keywords, and per tensor its dtype,
    device and the shape that must agree (trailing dims; the full shape for stacked methods)."""
    features = FEATURE_DIMS[call.method]
    shapes = []
    for tensor, feature in zip(call.tensors, features):
        if tensor is None:
            shapes.append(None)
        elif isinstance(tensor, Mapping):
            shapes.append(tuple((k, tuple(v.shape[1:]), str(v.dtype), str(v.device)) for k, v in sorted(tensor.items())))
        else:
            keep = tensor.shape if call.method in STACKED else (
                tensor.shape[1:] if feature < 0 else tensor.shape[tensor.ndim - feature:])
            shapes.append((tuple(keep), str(tensor.dtype), str(tensor.device)))
    return call.method, call.static, tuple(shapes)


def _batchable(call: _Call) -> bool:
    """Every tensor argument a tensor (or a dict of tensors for ``encode``) of enough dims, static
    keywords hashable, and no argument needing a gradient."""
    features = FEATURE_DIMS[call.method]
    try:
        hash(call.static)
    except TypeError:
        return False
    for tensor, feature in zip(call.tensors, features):
        if tensor is None:
            if call.method != "heads":
                return False
            continue
        values = list(tensor.values()) if isinstance(tensor, Mapping) and call.method == "encode" else [tensor]
        for value in values:
            if not isinstance(value, torch.Tensor) or value.ndim < max(feature, 1) + (1 if feature < 0 else 0):
                return False
            if value.requires_grad and torch.is_grad_enabled():
                return False
    if call.method == "encode" and isinstance(call.tensors[0], Mapping):
        sizes = {v.shape[0] for v in call.tensors[0].values()}
        return len(sizes) == 1
    return True


def _as_tensor(obs: Any) -> Any:
    """Observations as tensors (``encode`` accepts numpy arrays and dicts of them)."""
    if isinstance(obs, Mapping):
        return {key: _as_tensor(value) for key, value in obs.items()}
    return obs if isinstance(obs, torch.Tensor) or not hasattr(obs, "__array__") else torch.as_tensor(obs)


def _broadcast(shapes: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """``torch.broadcast_shapes`` for the lead shapes here, without its overhead (a tenth of the
    view's Python time); a mismatch raises as torch would."""
    ndim = max(len(shape) for shape in shapes)
    out = [1] * ndim
    for shape in shapes:
        for i, n in enumerate(shape, start=ndim - len(shape)):
            if n != 1:
                if out[i] not in (1, n):
                    raise RuntimeError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
                out[i] = n
    return tuple(out)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _is_vector_rows(column: Any) -> bool:
    """Whether an ``encode`` input holds one flat vector per row (a state observation). A dict of
    inputs counts as not: it may hold an image."""
    return isinstance(column, torch.Tensor) and column.ndim == 2


def _pad_rows(tensor: Any, rows: int) -> Any:
    """``tensor`` (or each value of a dict) with its last row repeated up to ``rows`` rows."""
    if tensor is None:
        return None
    if isinstance(tensor, Mapping):
        return {key: _pad_rows(value, rows) for key, value in tensor.items()}
    missing = rows - tensor.shape[0]
    if missing <= 0:
        return tensor
    return torch.cat([tensor, tensor[-1:].expand(missing, *tensor.shape[1:])])


def _cat(parts: list[Any]) -> Any:
    if isinstance(parts[0], Mapping):
        return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def _slice_rows(tensor: Any, start: int, rows: int) -> Any:
    if isinstance(tensor, Mapping):
        return {key: value[start:start + rows] for key, value in tensor.items()}
    return tensor[start:start + rows]


def _row_elements(tensor: Any) -> int:
    if isinstance(tensor, Mapping):
        return sum(_row_elements(value) for value in tensor.values())
    return math.prod(tensor.shape[1:])


# -- playing episodes ----------------------------------------------------------------------------
DEFAULT_LOCKSTEP = 64
"""Episodes played together unless told otherwise (all of a run's episodes up to this many). On
this 2-core CPU at one torch thread, 64 episodes of a small planner (the tests' tiny model) ran
3.4x faster than one at a time, 4 and 16 1.8x and 2.3x (600 MB against 360 MB resident); a planner
whose model calls are already large gains nothing but loses nothing either."""


def resolve_lockstep(lockstep: int | None, episodes: int) -> int:
    """Episodes to play together: ``lockstep`` (default :data:`DEFAULT_LOCKSTEP`), at most ``episodes``."""
    if lockstep is not None and lockstep < 1:
        raise ValueError(f"lockstep must be >= 1, got {lockstep}")
    return max(1, min(DEFAULT_LOCKSTEP if lockstep is None else int(lockstep), episodes))


class SharedTime:
    """An agent stepped in lockstep: remembers how many episodes shared each ``act``, so the
    record's ``act_ms`` can be the step's share of the wall time (:meth:`amortise`)."""

    def __init__(self, agent: Any, view: Any) -> None:
        self.agent, self.view, self.shares = agent, view, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.agent, name)

    def reset(self, goal_obs: Any, seed: int) -> None:
        self.agent.reset(goal_obs, seed)

    def set_goal(self, goal_obs: Any) -> None:
        self.agent.set_goal(goal_obs)

    def act(self, obs: Any) -> tuple[Any, Any]:
        self.shares.append(self.view.together)
        return self.agent.act(obs)

    def amortise(self, record: Any) -> Any:
        """``record`` with each step's ``act_ms`` divided by the episodes that shared it, and so
        are the times inside it that the agent reports (its ``compute``: head, graph and build
        milliseconds, ``*_ms``). Why the agent's own times too: they are wall times measured in
        one episode's thread while the other episodes' threads ran theirs on the same cores — fifty
        landmark agents building their graphs at once each timed ~50 × the build alone (spiral:
        ~6 s against 0.2 s), which the tables reported as the hierarchy's cost per step."""
        record.steps = [dataclasses.replace(step, act_ms=round(step.act_ms / n, 4), plan=_shared_plan(step.plan, n))
                        for step, n in zip(record.steps, self.shares)]
        return record


def _shared_plan(plan: dict[str, Any], together: int) -> dict[str, Any]:
    """``plan`` with the times in its ``compute`` (``*_ms``) divided by ``together``."""
    compute = plan.get("compute")
    if not compute or together == 1:
        return plan
    shared = {key: (round(float(value) / together, 4) if key.endswith("_ms") and value is not None else value)
              for key, value in compute.items()}
    return {**plan, "compute": shared}


Play = Callable[[int, Any], Any]
"""``play(index, model) -> result``: play episode ``index`` with ``model`` (its batching view)."""
Deliver = Callable[[int, Any], None]
"""``deliver(index, result)``: called in the caller's thread, in episode order."""


def play_episodes(count: int, play: Play, deliver: Deliver, *, model: Any, lockstep: int) -> None:
    """Play episodes ``0 … count-1``, ``lockstep`` at a time, and deliver their results in order.

    ``lockstep`` threads each play the next episode not yet started until none is left (a finished
    episode's slot takes the next one at once, so the batch stays full); every episode gets the
    model through a :class:`LockstepModel` view (also with ``lockstep = 1``, which plays in the
    calling thread: the same batching code, so the same floats). ``model=None`` (an injected agent
    factory without a model) plays the episodes one at a time, in the calling thread.

    An exception in an episode stops the others (their next model call raises
    :class:`LockstepCancelled`) and is re-raised here, with the episode's index in its message,
    after every thread has ended; so is an exception in ``deliver``.
    """
    lockstep = max(1, min(int(lockstep), count))
    if model is None or lockstep == 1:
        view = alone(model) if model is not None else None
        for index in range(count):
            if view is not None:
                view.order = index
            try:
                result = play(index, view)
            except Exception as exc:
                raise tagged(exc, index) from exc
            deliver(index, result)
        return
    batch = Lockstep(model, lockstep)
    cond = threading.Condition()
    state: dict[str, Any] = {"next": 0, "failure": None}
    finished: dict[int, Any] = {}

    def worker(view: LockstepModel) -> None:
        try:
            while True:
                with cond:
                    if state["failure"] is not None or state["next"] >= count:
                        return
                    index = state["next"]
                    state["next"] += 1
                view.order = index
                try:
                    result = play(index, view)
                except LockstepCancelled:
                    return
                except BaseException as exc:  # noqa: BLE001 - re-raised by the caller with the episode's index
                    with cond:
                        if state["failure"] is None:
                            state["failure"] = (index, exc)
                        cond.notify_all()
                    batch.cancel(f"episode {index} failed")
                    return
                with cond:
                    finished[index] = result
                    cond.notify_all()
        finally:
            batch.leave()

    threads = [threading.Thread(target=worker, args=(batch.view(),), name=f"lockstep-{i}", daemon=True)
               for i in range(lockstep)]
    for thread in threads:
        thread.start()
    try:
        for index in range(count):
            with cond:
                while index not in finished and state["failure"] is None:
                    cond.wait()
                if state["failure"] is not None:
                    break
                result = finished.pop(index)
            deliver(index, result)
    except BaseException:
        batch.cancel("stopped")
        with cond:
            state["failure"] = state["failure"] or (-1, None)
        raise
    finally:
        if state["failure"] is not None:
            batch.cancel("stopped")
        for thread in threads:
            thread.join()
    failure = state["failure"]
    if failure is not None and failure[1] is not None:
        index, exc = failure
        raise tagged(exc, index) from exc


def tagged(exc: BaseException, index: int) -> BaseException:
    """A copy of ``exc`` (same type and attributes) whose message starts with the episode's index
    (a ``RuntimeError`` with that message for a type that cannot be copied so)."""
    message = f"episode {index}: {exc}"
    try:
        clone = type(exc).__new__(type(exc))
        clone.__dict__.update(getattr(exc, "__dict__", {}))
        clone.args = (message,)
    except (TypeError, AttributeError):
        return RuntimeError(message)
    return clone
