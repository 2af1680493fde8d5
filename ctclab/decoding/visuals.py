"""Teaching pictures of CTC: the posteriorgram, the collapse of a path, the forward lattice.

Three views of what a CTC model outputs and how the loss reads it:

* :func:`plot_posteriorgram`: per-frame output probabilities of one utterance (characters and
  the blank on one axis, frames on the other) with the greedy path drawn over them;
* :func:`collapse_steps`: a frame path turned into text step by step (raw path, repeats
  merged, blanks dropped);
* :func:`ctc_forward` / :func:`plot_forward_lattice`: the forward variables alpha of the CTC
  loss on the label with blanks around every character. ``-ln`` of the two final alphas summed
  is the CTC loss (checked against ``keras.ops.ctc_loss`` and a sum over every alignment in
  tests/test_ctc_visuals.py).

All computations are natural-log NumPy; the plots return matplotlib figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ctclab.alphabet import ENGLISH, Alphabet

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

BLANK_SYMBOL = "∅"  # how the blank is drawn
SPACE_SYMBOL = "␣"  # how a space is drawn


def symbol(index: int, alphabet: Alphabet = ENGLISH) -> str:
    """A printable label for an output index: the character, ␣ for space, ∅ for the blank."""
    if index == alphabet.blank_index:
        return BLANK_SYMBOL
    character = alphabet.characters[index]
    return SPACE_SYMBOL if character == " " else character


# ---------------------------------------------------------------------- the collapse


def collapse_steps(path: Sequence[int], alphabet: Alphabet = ENGLISH) -> pd.DataFrame:
    """The CTC collapse B(path) in its two steps, as a small table.

    Args:
        path: one output index per frame (e.g. the argmax of each frame).
        alphabet: names the characters and the blank.

    Returns:
        pandas.DataFrame indexed by step ("frame path", "merge repeats", "drop blanks") with
        columns "symbols" (space-separated, blank as ∅) and "length".
    """
    import pandas as pd

    path = [int(index) for index in path]
    merged = [index for position, index in enumerate(path) if position == 0 or index != path[position - 1]]
    kept = [index for index in merged if index != alphabet.blank_index]
    rows = {
        "frame path": path,
        "merge repeats": merged,
        "drop blanks": kept,
    }
    table = pd.DataFrame.from_dict(
        {
            step: {"symbols": " ".join(symbol(i, alphabet) for i in indices), "length": len(indices)}
            for step, indices in rows.items()
        },
        orient="index",
    )
    table.attrs["text"] = alphabet.int_sequence_to_text(kept)
    return table


# ---------------------------------------------------------------------- the forward lattice


def extended_label(label: Sequence[int], blank_index: int) -> list[int]:
    """The label with a blank before, between and after its characters: length 2L + 1."""
    extended = [blank_index]
    for index in label:
        extended += [int(index), blank_index]
    return extended


def predecessors(extended: Sequence[int], state: int) -> list[int]:
    """Lattice states that may precede ``state`` one frame earlier.

    Stay (s), advance by one (s - 1), or skip a blank (s - 2) when s is a character different
    from the character two states back (equal neighbours need the blank between them).
    """
    allowed = [s for s in (state, state - 1) if s >= 0]
    if state >= 2 and extended[state] != extended[state - 2]:  # also excludes blanks (equal to s - 2)
        allowed.append(state - 2)
    return allowed


def ctc_forward(probabilities: np.ndarray, label: Sequence[int], blank_index: int) -> np.ndarray:
    """Log forward variables ln alpha[t, s] of the CTC loss.

    alpha[t, s] is the total probability of the frame paths 0..t that spell the extended label
    up to state s and sit in state s at frame t:
    ``alpha[t, s] = p[t, ext[s]] * sum(alpha[t - 1, r] for r in predecessors(s))``, starting in
    the first blank or the first character.

    Args:
        probabilities: (T, C) per-frame probabilities of the valid frames.
        label: character indices (no blanks).
        blank_index: the blank column.

    Returns:
        (T, 2L + 1) natural-log alphas (-inf where a state is unreachable).
    """
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.ndim != 2 or not len(probabilities):
        raise ValueError(f"probabilities must be a non-empty (T, C) array, got shape {probabilities.shape}")
    extended = extended_label(label, blank_index)
    with np.errstate(divide="ignore"):
        emissions = np.log(probabilities[:, extended])  # (T, S)
    frames, states = emissions.shape
    alpha = np.full((frames, states), -np.inf)
    alpha[0, :2] = emissions[0, :2]
    steps = [predecessors(extended, s) for s in range(states)]
    for t in range(1, frames):
        for s in range(states):
            alpha[t, s] = np.logaddexp.reduce(alpha[t - 1, steps[s]]) + emissions[t, s]
    return alpha


def ctc_loss_from_alpha(alpha: np.ndarray) -> float:
    """-ln p(label | x): the final blank and the final character are both valid endings."""
    return float(-np.logaddexp.reduce(alpha[-1, -2:]))


def state_occupancy(probabilities: np.ndarray, label: Sequence[int], blank_index: int) -> np.ndarray:
    """(T, 2L + 1) posterior probability of being in each lattice state at each frame.

    alpha * beta / p (forward-backward); every frame's row sums to 1. The backward variables
    are the forward variables of the time- and label-reversed problem.
    """
    probabilities = np.asarray(probabilities, np.float64)
    alpha = ctc_forward(probabilities, label, blank_index)
    beta = ctc_forward(probabilities[::-1], list(label)[::-1], blank_index)[::-1, ::-1]  # includes p[t]
    extended = extended_label(label, blank_index)
    with np.errstate(divide="ignore"):
        emissions = np.log(probabilities[:, extended])
    log_occupancy = alpha + beta - emissions + ctc_loss_from_alpha(alpha)
    return np.exp(np.where(np.isfinite(emissions), log_occupancy, -np.inf))


# ---------------------------------------------------------------------- figures


def plot_posteriorgram(
    probabilities: np.ndarray,
    alphabet: Alphabet = ENGLISH,
    length: int | None = None,
    title: str = "Posteriorgram",
    step_ms: float | None = None,
) -> Figure:
    """Per-frame output probabilities as an image, with the greedy (argmax) path on top.

    Args:
        probabilities: (T, C) softmax outputs of one utterance.
        alphabet: gives the row labels (blank ∅, space ␣).
        length: valid frames (None: all).
        title: axes title.
        step_ms: milliseconds per output frame, to label the time axis in ms (None: frames).

    Returns:
        The figure; its axes hold the image and one line (the greedy path).
    """
    import matplotlib.pyplot as plt

    probabilities = np.asarray(probabilities)[:length]  # (T, C)
    frames, classes = probabilities.shape
    if classes != alphabet.output_dim:
        raise ValueError(f"probabilities have {classes} outputs; alphabet {alphabet.name!r} has {alphabet.output_dim}")
    figure, axis = plt.subplots(figsize=(min(14, 3 + frames / 12), 6))
    extent = (-0.5, frames - 0.5, classes - 0.5, -0.5)
    image = axis.imshow(
        probabilities.T, aspect="auto", cmap="magma", vmin=0, vmax=1, extent=extent, interpolation="nearest"
    )
    axis.plot(
        np.arange(frames),
        np.argmax(probabilities, axis=1),
        color="cyan",
        linewidth=1,
        marker=".",
        markersize=3,
        label="greedy path",
    )
    axis.set_yticks(range(classes), [symbol(i, alphabet) for i in range(classes)], fontsize=7)
    axis.set(title=title, ylabel="output", xlabel="output frame")
    if step_ms:
        ticks = axis.get_xticks()
        axis.set_xticks(ticks, [f"{tick * step_ms:.0f}" for tick in ticks])
        axis.set_xlim(-0.5, frames - 0.5)
        axis.set_xlabel("time (ms)")
    axis.legend(loc="upper right", fontsize=8)
    figure.colorbar(image, ax=axis, label="probability")
    figure.tight_layout()
    return figure


def lattice_transitions(occupancy: np.ndarray, extended: Sequence[int]) -> list[tuple[int, int, int]]:
    """(t, from state, to state) of every allowed step between states on some valid path."""
    frames, states = occupancy.shape
    on_path = occupancy > 0
    return [
        (t, r, s)
        for t in range(1, frames)
        for s in range(states)
        if on_path[t, s]
        for r in predecessors(extended, s)
        if on_path[t - 1, r]
    ]


def plot_forward_lattice(
    probabilities: np.ndarray, label: Sequence[int], alphabet: Alphabet = ENGLISH, title: str = "CTC forward lattice"
) -> Figure:
    """The lattice of the CTC loss for a short label: states x frames, shaded by occupancy.

    Rows are the extended label (∅ c1 ∅ c2 ... ∅), columns the frames; a cell's shade is the
    posterior probability of being there, its text the forward variable ln alpha, and grey
    segments are the allowed transitions between cells that lie on some complete path.

    Returns:
        The figure (one axes: an image, one line per transition, one text per reachable cell).
    """
    import matplotlib.pyplot as plt

    extended = extended_label(label, alphabet.blank_index)
    alpha = ctc_forward(probabilities, label, alphabet.blank_index)  # (T, S)
    occupancy = state_occupancy(probabilities, label, alphabet.blank_index)
    frames, states = alpha.shape
    figure, axis = plt.subplots(figsize=(min(14, 2 + 0.7 * frames), 1 + 0.45 * states))
    axis.imshow(occupancy.T, aspect="auto", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    for t, r, s in lattice_transitions(occupancy, extended):
        axis.plot([t - 1, t], [r, s], color="grey", linewidth=0.8, alpha=0.7)
    for t in range(frames):
        for s in range(states):
            if np.isfinite(alpha[t, s]):
                axis.text(t, s, f"{alpha[t, s]:.1f}", ha="center", va="center", fontsize=6)
    axis.set_yticks(range(states), [symbol(i, alphabet) for i in extended])
    axis.set(
        title=f"{title}: loss = {ctc_loss_from_alpha(alpha):.3f} nats", xlabel="frame", ylabel="extended label state"
    )
    figure.tight_layout()
    return figure
