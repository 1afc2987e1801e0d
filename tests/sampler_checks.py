"""The per-run half of the sampler fuzz (tests/test_sampler_invariants.py): tiny models of four kinds, a
random case, one drained run, and the checks its events must pass (check_events: output, commit rule,
statistics, speculative rounds). The twin runs and the search itself are in the test file."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tiny_models, when run as a script
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tiny_models import VOCAB, agreeable_model, decoding_model  # noqa: E402
from spec_decode import iter_speculative  # noqa: E402
from spec_decode.draft import adapt_block_size  # noqa: E402
from twotower import build_model  # noqa: E402
from twotower.commit import select_commits  # noqa: E402
from twotower.decoding import iter_ar, iter_mask_diffusion, iter_mock_ar  # noqa: E402
from twotower.short_scan import use_short_scan  # noqa: E402
from twotower.validation import SEED_LIMIT  # noqa: E402

MODES = ("diffusion", "speculative", "mock_ar", "ar")
_MODELS: dict = {}


def model_for(kind: str, seed: int):
    """One model per (kind, seed), built once: sharp (confidences spread over (0, 1), every commit-rule branch),
    agreeable (drafts often accepted), other_pattern (agreeable, another stack, no short scan), plain (the tiny
    preset as initialised: near-uniform heads)."""
    key = (kind, seed)
    if key not in _MODELS:
        if kind == "sharp":
            model = decoding_model(seed)
        elif kind == "agreeable":
            model = agreeable_model(seed, shift=0.3 + 0.2 * seed, live=True)
        elif kind == "other_pattern":  # another layer stack, with transformers' own Mamba scan (no short scan):
            # speculative then rolls back through its snapshot path
            model = agreeable_model(seed, shift=0.4, pattern=["*M-M", "M*", "MM*E"][seed % 3], live=True)
            use_short_scan(model, max_len=0)
        else:
            model = build_model("tiny", seed=seed)
        _MODELS[key] = model.eval()
    return _MODELS[key]


class Patch:
    """monkeypatch's setattr / undo, for the script (force_tokens takes any object with setattr)."""

    def __init__(self):
        self.undo_list = []

    def setattr(self, obj, name, value):
        self.undo_list.append((obj, name, name in vars(obj), vars(obj).get(name)))
        setattr(obj, name, value)

    def undo(self):
        for obj, name, had, old in reversed(self.undo_list):
            if had:
                setattr(obj, name, old)
            else:
                delattr(obj, name)
        self.undo_list.clear()


# ------------------------------------------------------------------------------------------------- drawing cases
def draw_case(rng: random.Random, index: int, modes=MODES, longest: int = 70) -> dict:
    """One case; longest: the largest max_new_tokens drawn (70 in the search, less for the test's sample)."""
    mode = modes[index % len(modes)] if rng.random() < 0.5 else rng.choice(modes)
    kind = rng.choice(["sharp", "sharp", "agreeable", "other_pattern", "plain"] if mode != "speculative" else
                      ["sharp", "agreeable", "agreeable", "other_pattern", "plain"])
    batch = 1 if mode == "speculative" else rng.choice([1, 1, 2, 3, 4])
    length = rng.choice([1, rng.randint(1, 40), rng.randint(1, 10)])
    temperature = rng.choice([0.0, 0.0, 0.0, 1e-4, 0.7, 1.0, 1.0, 1.5, 1e4])
    case = dict(
        index=index, mode=mode, model=(kind, rng.randrange(4)),
        # now and then a special id in the prompt (pad, BOS, EOS, unk, the mask): it is only text to the samplers
        prompt=[[rng.randrange(0 if rng.random() < 0.05 else 5, VOCAB) for _ in range(length)] for _ in range(batch)],
        max_new=rng.choice([1, 2, rng.randint(1, longest), rng.randint(1, longest), rng.randint(1, 24)]),
        temperature=temperature,
        top_k=rng.choice([None, None, None, 0, 1, rng.randint(2, 20), VOCAB, 1000]),
        top_p=rng.choice([None, None, None, 1.0, 1e-6, round(rng.uniform(0.05, 0.99), 3)]),
        seed=rng.choice([None, 0, 1, rng.randrange(2**31), SEED_LIMIT - 1]) if temperature else None,
        eos=rng.choice([None, None, "often", "often", "forced"] if mode != "speculative" else [None, "often"]),
    )
    if temperature and case["seed"] is None and rng.random() < 0.7:
        case["seed"] = rng.randrange(1000)
    S = rng.choice([1, 2, rng.randint(1, 8), rng.randint(1, 16), rng.randint(1, 40)])
    gamma = rng.choice([1.0, 1e-9, 0.5, round(rng.uniform(0.01, 1.0), 3), round(rng.uniform(0.5, 1.0), 3)])
    if mode == "diffusion":
        case.update(S=S, steps=rng.randint(1, S + 3), gamma=gamma, anchor=rng.random() < 0.3)
    elif mode == "speculative":
        case.update(S=S, draft_steps=rng.choice([1, 1, 2, rng.randint(1, min(S, 6) + 3)]), gamma=gamma,
                    adaptive=rng.random() < 0.3, per_position=rng.random() < 0.7,
                    min_conf=rng.choice([0.0, 0.0, 1.0, round(rng.uniform(0.0, 1.0), 3)]))
    return case


def run(case: dict, model, eos, **override) -> list:
    """The case's events, drained; override: settings changed for a twin run."""
    c = {**case, **override}
    prompt = torch.tensor(c["prompt"])
    sampling = dict(temperature=c["temperature"], top_k=c["top_k"], top_p=c["top_p"], seed=c["seed"])
    mode = c["mode"]
    if mode == "diffusion":
        events = iter_mask_diffusion(model, prompt, c["max_new"], c["S"], c["steps"], c["gamma"],
                                     eos_token_id=eos, anchor_first=c["anchor"], **sampling)
    elif mode == "mock_ar":
        events = iter_mock_ar(model, prompt, c["max_new"], eos_token_id=eos, **sampling)
    elif mode == "ar":
        events = iter_ar(model, prompt, c["max_new"], eos_token_id=eos, **sampling)
    else:
        events = iter_speculative(model, prompt, max_new_tokens=c["max_new"], block_size=c["S"],
                                  draft_steps=c["draft_steps"], draft_threshold=c["gamma"], eos_token_id=eos,
                                  adaptive=c["adaptive"], min_draft_confidence=c["min_conf"],
                                  per_position_rollback=c["per_position"], **sampling)
    kept, copies = [], []
    for event in events:  # a copy of each event's tensors as it is yielded: events are never changed afterwards
        kept.append(event)
        copies.append([t.clone() for t in _tensors(event)])
    for event, copy in zip(kept, copies):
        if not all(torch.equal(a, b) for a, b in zip(_tensors(event), copy)):
            raise AssertionError(f"a {event.kind} event (block {event.block}, step {event.step}) changed after it "
                                 "was yielded")
    return kept


def _tensors(event) -> list:
    return [t for t in (event.tokens, event.masked, event.confidence, event.committed, event.commit_step,
                        event.sequences) if t is not None]


def cut(row: list[int], eos) -> list[int]:
    return row[: row.index(eos) + 1] if eos is not None and eos in row else row


# ------------------------------------------------------------------------------------------------ the invariants
class Violations(list):
    def expect(self, ok, message: str):
        if not ok:
            self.append(message)
        return bool(ok)


def check_events(case: dict, events: list, eos, model, v: Violations, masked_forbidden: bool = True) -> list:
    """Every invariant one run's events must keep. Returns the done event's rows (new tokens per row)."""
    cfg = model.config
    mode, V, mask_id, pad = case["mode"], cfg.vocab_size, cfg.mask_token_id, cfg.pad_token_id or 0
    prompt = torch.tensor(case["prompt"])
    B, P = prompt.shape
    max_new = case["max_new"]
    kinds = [e.kind for e in events]
    if not v.expect(kinds and kinds[-1] == "done" and kinds.count("done") == 1, f"events end {kinds[-3:]}"):
        return []
    done, body = events[-1], events[:-1]
    v.expect(all(e.mode == mode for e in events), "an event of another mode")
    v.expect(all(k in ("step", "token", "verify", "block") for k in kinds[:-1]), f"unknown kinds {set(kinds)}")
    rows, stats = done.info["new_tokens"], done.stats

    # the stream of emitted tokens, from the events alone
    if mode in ("diffusion", "mock_ar"):
        parts = [e.tokens for e in body if e.kind == "block"]
    elif mode == "ar":
        parts = [e.tokens for e in body if e.kind == "token"]
    else:
        parts = [e.tokens for e in body if e.kind in ("token", "block")]
    stream = torch.cat(parts, dim=1) if parts else torch.zeros(B, 0, dtype=torch.long)
    L = stream.shape[1]
    v.expect(stream.shape[0] == B and len(rows) == B, f"batch {stream.shape[0]} / {len(rows)} rows, not {B}")
    expected = [cut(stream[b].tolist(), eos) for b in range(B)]
    v.expect(rows == expected, f"done rows {rows} != the events' tokens cut at EOS {expected}")
    padded = stream.clone()
    for b, row in enumerate(expected):
        padded[b, len(row):] = pad
    v.expect(done.sequences is not None and torch.equal(done.sequences, torch.cat([prompt, padded], 1)),
             "done.sequences != prompt + the events' tokens, pad after EOS")
    v.expect(1 <= L <= max_new, f"{L} tokens generated, max_new_tokens {max_new}")
    v.expect(bool(((stream >= 0) & (stream < V)).all()), "an id outside the vocabulary")
    if masked_forbidden:
        v.expect(not (stream == mask_id).any(), f"the mask id {mask_id} in the output")
    # the stopping rule: rows cut after their first EOS, the rest run to max_new_tokens, no extra block/token
    for b, row in enumerate(rows):
        if eos is not None and eos in row:
            v.expect(row.index(eos) == len(row) - 1, f"row {b} goes on after EOS")
        else:
            v.expect(len(row) == L, f"row {b} has no EOS yet holds {len(row)} of {L} tokens")
    all_stopped = eos is not None and all(row and row[-1] == eos for row in rows)
    if not all_stopped:
        v.expect(L == max_new, f"stopped at {L} < max_new_tokens {max_new} with a row lacking EOS")
    else:
        longest = max(len(r) for r in rows)
        last_unit = parts[-1].shape[1] if mode != "speculative" else 0
        if mode in ("ar", "speculative"):
            v.expect(L == longest, f"{L} tokens emitted after the last EOS at {longest}")
        else:
            v.expect(L - last_unit < longest, f"a block ran after every row met EOS ({L}, {longest})")

    # statistics
    lengths = [len(r) for r in rows]
    steps = [e for e in body if e.kind == "step"]
    v.expect(stats["new_tokens"] == max(lengths), f"new_tokens {stats['new_tokens']} != {max(lengths)}")
    if B > 1:
        v.expect((stats.get("batch_size"), stats.get("batch_tokens")) == (B, sum(lengths)), "batch stats")
    v.expect(stats["nfe"] == len(steps) == done.nfe, f"nfe {stats['nfe']} / done {done.nfe} / {len(steps)} steps")
    v.expect(stats["context_passes"] == done.context_passes, "context passes: stats != done event")
    tpp = stats["tokens_per_pass"]
    if stats["nfe"]:
        v.expect(tpp is not None and abs(tpp - sum(lengths) / (stats["nfe"] * B)) < 1e-9, f"tokens_per_pass {tpp}")
    else:
        v.expect(tpp is None, f"tokens_per_pass {tpp} without a denoiser pass")
    v.expect(stats["total_s"] > 0 and stats["time_to_first_token_s"] is not None
             and 0 < stats["time_to_first_token_s"] <= stats["total_s"], "time to first token")
    v.expect(done.generated == lengths[0], "done.generated != row 0's length")
    elapsed = [e.elapsed for e in events]
    v.expect(elapsed == sorted(elapsed) and done.elapsed == stats["total_s"], "elapsed goes backwards")
    nfes = [e.nfe for e in events]
    passes = [e.context_passes for e in events]
    v.expect(nfes == sorted(nfes) and passes == sorted(passes), "nfe / context passes go backwards")
    v.expect([e.nfe for e in steps] == list(range(1, len(steps) + 1)), "step events' nfe do not count 1, 2, ...")
    v.expect(all(e.nfe == 0 for e in events) if mode == "ar" else True, "AR reports denoiser passes")

    if mode in ("diffusion", "mock_ar"):
        check_diffusion(case, body, stats, v, mask_id, B)
    elif mode == "ar":
        tokens = [e for e in body if e.kind == "token"]
        v.expect(kinds[:-1] == ["token"] * len(tokens), "AR emitted something else than tokens")
        v.expect(all(e.block == i and e.generated == i + 1 and e.context_passes == i + 1 and e.tokens.shape == (B, 1)
                     for i, e in enumerate(tokens)), "AR token events' counters")
        v.expect(stats["context_passes"] == len(tokens), f"AR: {stats['context_passes']} passes, {len(tokens)} tokens")
    else:
        check_speculative(case, body, stats, v, eos, mask_id)
    return rows


def check_diffusion(case, body, stats, v: Violations, mask_id, B):
    """The commit rule, pass by pass, replayed from the events (mock-AR: S = 1, one step, γ = 1)."""
    mock = case["mode"] == "mock_ar"
    S, steps_per_block, gamma = (1, 1, 1.0) if mock else (case["S"], case["steps"], case["gamma"])
    anchor = not mock and case["anchor"]
    blocks = [e for e in body if e.kind == "block"]
    v.expect(stats["context_passes"] == len(blocks), f"{stats['context_passes']} context passes, {len(blocks)} blocks")
    if not mock:
        v.expect({k: stats.get(k) for k in ("gamma", "block_size", "steps_per_block", "anchor_first")}
                 == dict(gamma=gamma, block_size=S, steps_per_block=steps_per_block, anchor_first=anchor),
                 "diffusion settings in stats")
        v.expect(stats.get("anchored_tokens") == (len(blocks) if anchor else None), "anchored_tokens")
    start, index = 0, 0
    current: list = []
    for e in body:
        if e.kind == "step":
            current.append(e)
            continue
        if not v.expect(e.kind == "block", f"diffusion emitted a {e.kind} event"):
            continue
        size = min(S, case["max_new"] - start)
        v.expect(e.block == index and e.block_start == start and e.tokens.shape == (B, size),
                 f"block {index}: block {e.block} start {e.block_start} shape {tuple(e.tokens.shape)}")
        if e.tokens.shape != (B, size):
            return
        n = len(current)
        v.expect((n == 0) if (anchor and size == 1) else (1 <= n <= steps_per_block),
                 f"block {index}: {n} passes, steps_per_block {steps_per_block}")
        # every block is S wide; the budget's last, adding size < S, stops once its first `size` are in (every
        # row runs as over a whole block until then)
        masked = torch.ones(B, S, dtype=torch.bool)
        tokens = torch.full((B, S), mask_id)
        commit_step = torch.full((B, S), -1)
        at_commit = torch.zeros(B, S)  # each position's confidence in the pass that committed it
        if anchor:
            masked[:, 0] = False
            tokens[:, 0] = e.tokens[:, 0]
        for step, s in enumerate(current):
            v.expect(s.block == index and s.step == step and s.block_start == start, f"block {index} step {step} ids")
            if not v.expect(s.tokens.shape == (B, S), f"step shape {tuple(s.tokens.shape)}"):
                return
            v.expect(s.info.get("needed") == (size if size < S else None), f"block {index} step {step}: needed")
            open_rows = masked.any(-1)
            c = s.committed
            v.expect(not (c & ~masked).any(), f"block {index} step {step}: committed a closed position")
            v.expect(bool((c.sum(-1)[open_rows] >= 1).all()), f"block {index} step {step}: a row committed nothing")
            rule = select_commits(s.confidence, masked, gamma, steps_per_block - step)
            v.expect(torch.equal(c, rule), f"block {index} step {step}: commits != select_commits of the confidences")
            v.expect(torch.equal(s.tokens[~masked], tokens[~masked]), f"block {index} step {step}: a token changed")
            v.expect(not (s.tokens[c] == mask_id).any(), f"block {index} step {step}: committed the mask id")
            v.expect(bool(((s.confidence >= 0) & (s.confidence <= 1)).all()), f"block {index} step {step}: confidence")
            tokens = torch.where(c, s.tokens, tokens)
            at_commit = torch.where(c, s.confidence, at_commit)
            commit_step = torch.where(c, torch.full_like(commit_step, step), commit_step)
            masked &= ~c
            v.expect(torch.equal(s.masked, masked), f"block {index} step {step}: masked != replay")
            v.expect(torch.equal(s.commit_step, commit_step), f"block {index} step {step}: commit_step != replay")
            v.expect(bool((s.tokens[masked] == mask_id).all()), f"block {index} step {step}: open slot not the mask")
            v.expect(s.generated == start + int((~masked[0, :size]).sum()), f"block {index} step {step}: generated")
        v.expect(not masked[:, :size].any(), f"block {index}: positions left open after {n} passes")
        v.expect(torch.equal(e.tokens, tokens[:, :size]), f"block {index}: block tokens != the replayed commits")
        v.expect(torch.equal(e.commit_step, commit_step[:, :size]), f"block {index}: block commit_step != replay")
        given = 1 if anchor else 0
        v.expect(torch.equal(e.confidence[:, given:], at_commit[:, given:size]),
                 f"block {index}: confidences != at commit")
        # (0 is possible: a token drawn at a high temperature where the unscaled law gives it ~exp(-20000))
        v.expect(not anchor or bool(((e.confidence[:, 0] >= 0) & (e.confidence[:, 0] <= 1)).all()),
                 f"block {index}: the anchor's confidence")
        v.expect(e.generated == start + size and not e.masked.any(), f"block {index}: block event counters")
        start, index, current = start + size, index + 1, []
    v.expect(not current, "step events after the last block")


def check_speculative(case, body, stats, v: Violations, eos, mask_id):
    """Rounds: passes, a verify, a block; counts against stats; the draft-length schedule."""
    S, max_new = case["S"], case["max_new"]
    first = body[0]
    v.expect(first.kind == "token" and first.block == 0 and first.commit_step.tolist() == [[-1]]
             and first.info.get("source") == "prefill", "speculative does not open with the prefill's token")
    expected_cut = case["min_conf"] if (case["temperature"] == 0 or case["draft_steps"] == 1) else 0.0
    v.expect(stats["min_draft_confidence"] == expected_cut, f"min_draft_confidence {stats['min_draft_confidence']}")
    v.expect((stats["block_size"], stats["draft_steps"], stats["draft_threshold"], stats["adaptive"],
              stats["per_position_rollback"]) == (S, case["draft_steps"], case["gamma"], case["adaptive"],
                                                  case["per_position"]), "speculative settings in stats")
    rounds, current, generated = [], [], 1
    size = S
    verify = None
    for e in body[1:]:
        if e.kind == "step":
            current.append(e)
        elif e.kind == "verify":
            verify = e
        elif e.kind == "block":
            r = len(rounds) + 1
            if not v.expect(verify is not None and current, f"round {r}: a block without passes / verify"):
                return
            info, k, n = verify.info, verify.info["block_size"], verify.info["accepted"]
            v.expect(all(s.block == r for s in current) and verify.block == r == e.block, f"round {r}: indices")
            v.expect([s.step for s in current] == list(range(len(current))), f"round {r}: step numbers")
            v.expect(len(current) == info["draft_passes"] <= case["draft_steps"], f"round {r}: {len(current)} passes")
            v.expect(0 <= n <= k <= info["drafted_before_cut"], f"round {r}: accepted {n}, k {k}")
            # a round emits its accepted drafts and the verifier's token: the last drafts one fewer than it leaves
            budget = max_new - generated
            v.expect(info["drafted_before_cut"] == min(size, max(1, budget - 1)),
                     f"round {r}: drafted {info['drafted_before_cut']}, expected min({size}, max(1, {budget} - 1))")
            last = current[-1]
            masked = torch.ones_like(last.masked)
            for s in current:  # the draft passes: offsets, commits, and at greedy the commit rule itself
                v.expect(s.block_start == s.generated == generated, f"round {r} pass {s.step}: offsets")
                v.expect(not (s.committed & ~masked).any() and bool(s.committed.any()),
                         f"round {r} pass {s.step}: committed nothing, or a closed position")
                if case["temperature"] == 0:
                    rule = select_commits(s.confidence, masked, case["gamma"], case["draft_steps"] - s.step)
                    v.expect(torch.equal(s.committed, rule), f"round {r} pass {s.step}: commits != select_commits")
                masked = masked & ~s.committed
                v.expect(torch.equal(s.masked, masked), f"round {r} pass {s.step}: masked != replay")
                v.expect(bool((s.commit_step[masked] == -1).all() and (s.commit_step[s.committed] == s.step).all()),
                         f"round {r} pass {s.step}: commit_step")
            if case["temperature"] == 0:  # the proposal cut: the leading drafted tokens whose confidence reaches it
                low = (last.confidence[0] < expected_cut).nonzero()
                want = max(1, int(low[0, 0]) if low.numel() else last.confidence.shape[1])
                v.expect(k == want, f"round {r}: proposed {k}, the cut at {expected_cut} gives {want}")
            v.expect(verify.block_start == generated, f"round {r}: verify offset")
            if case["temperature"] == 0 and n < k:  # greedy: each tower's own token is its most probable one
                v.expect(info["p_target_of_target"] >= info["p_target_of_draft"]
                         and info["p_draft_of_draft"] >= info["p_draft_of_target"], f"round {r}: greedy probabilities")
            n_kept = min(n, e.tokens.shape[1])
            v.expect(e.commit_step[0, :n_kept].tolist() == last.commit_step[0, :n_kept].tolist()
                     and (e.commit_step[0, n_kept:] == info["draft_passes"]).all(), f"round {r}: commit steps")
            v.expect(not last.masked.any() and last.tokens.shape[1] == info["drafted_before_cut"],
                     f"round {r}: draft left open / wrong width")
            v.expect(not (last.tokens == mask_id).any(), f"round {r}: the mask id drafted")
            v.expect(info["drafted"] == verify.tokens[0].tolist() == last.tokens[0, :k].tolist(),
                     f"round {r}: verified tokens != the draft")
            v.expect(info["bonus"] == (n == k) and info["rejected_pos"] == (None if n == k else n), f"round {r}: bonus")
            emitted = (info["drafted"][:n] + [info["target_token"]])[:budget]
            emitted = cut(emitted, eos)
            v.expect(e.tokens[0].tolist() == emitted, f"round {r}: emitted {e.tokens[0].tolist()} != {emitted}")
            v.expect(e.block_start == generated and e.generated == generated + len(emitted), f"round {r}: offsets")
            v.expect(e.info["accepted"] == n and e.info["bonus"] == (n == k), f"round {r}: block info")
            v.expect(not case["per_position"] or e.info["rollback"] in ("none", "positions", "snapshot", "rescan"),
                     f"round {r}: rollback {e.info['rollback']}")
            v.expect(case["per_position"] or e.info["rollback"] != "positions", f"round {r}: positions rollback off")
            if min(case["min_conf"], expected_cut) == 0.0:
                v.expect(k == info["drafted_before_cut"], f"round {r}: a cut with the cut off")
            rounds.append((k, n, e.info["rollback"]))
            generated += len(emitted)
            if case["adaptive"]:
                size = adapt_block_size(size, k, n, 2 * S)
            current, verify = [], None
        elif e.kind == "token":  # one token left after a round: the context tower's own, no round
            v.expect(e is body[-1] and not current and verify is None and generated == max_new - 1
                     and e.info.get("source") == "last token" and e.block == len(rounds) + 1
                     and e.block_start == generated and e.commit_step.tolist() == [[-1]] and e.nfe == stats["nfe"],
                     "a last token event out of place")
            generated += 1
    v.expect(not current and verify is None, "a round left unfinished")
    last = int(body[-1].kind == "token" and len(body) > 1)
    v.expect(stats["last_token_passes"] <= last, "a last token's pass without a last token")
    v.expect(stats["last_tokens"] == last, "last_tokens is not the last token events' count")
    rescans = sum(rb == "rescan" for *_, rb in rounds)
    R = len(rounds)
    v.expect(stats["rounds"] == R == stats["verify_passes"], f"rounds {stats['rounds']} / {R}")
    v.expect(stats["proposed_lengths"] == [k for k, *_ in rounds], "proposed_lengths")
    v.expect(stats["acceptance_lengths"] == [n + 1 for _, n, _ in rounds], "acceptance_lengths")
    v.expect(stats["drafted"] == sum(k for k, *_ in rounds) and stats["accepted"] == sum(n for _, n, _ in rounds),
             "drafted / accepted")
    if R:
        v.expect(abs(stats["acceptance_rate"] - stats["accepted"] / stats["drafted"]) < 1e-12, "acceptance_rate")
        v.expect(abs(stats["mean_acceptance_length"] - (1 + stats["accepted"] / R)) < 1e-12, "mean acceptance length")
    else:
        v.expect(stats["acceptance_rate"] is None and stats["mean_acceptance_length"] is None, "rates without rounds")
    by_pos = stats["acceptance_by_position"]
    v.expect(sum(p["drafted"] for p in by_pos) == stats["drafted"]
             and sum(p["accepted"] for p in by_pos) == stats["accepted"], "acceptance_by_position sums")
    v.expect(stats["draft_passes"] == stats["nfe"], "draft_passes != nfe")
    v.expect(stats["rollback_passes"] == rescans, f"rollback_passes {stats['rollback_passes']} != {rescans} re-scans")
    v.expect(stats["context_passes"] == 1 + R + rescans + stats["last_token_passes"],
             f"context passes {stats['context_passes']}, {R} rounds")
    v.expect(sum(stats["rollbacks"].values()) == R and all(stats["rollbacks"].get(x, 0) == sum(
        rb == x for *_, rb in rounds) for x in stats["rollbacks"]), "rollbacks tally")
    v.expect(stats["new_tokens"] <= 1 + sum(stats["acceptance_lengths"]) + last, "more tokens than the rounds accepted")


# ------------------------------------------------------------------------------------------------- one case
