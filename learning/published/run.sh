#!/usr/bin/env bash
# The published learning result (docs/learning.md, "The published result"), stage by
# stage. Every stage is a plain `ponder` command; bench and collect stages resume if
# rerun with the same folders. Run from the repository root after `make install`.
#
#   bash learning/published/run.sh collect|train|eval-base|eval-policy|report
#   bash learning/published/run.sh round2|eval-round2|eval-round2-bon8|eval-level2|dpo|search-learned|report
#                                         (the second session's stages)
#
# Sizes were chosen from measured rates on a 2-core CPU (docs/learning.md says which
# and what each stage cost). WORK holds the data and models (large, not committed);
# the bench folders and the report are copied into learning/published/.
set -euo pipefail
WORK=${WORK:-/work/runs}
PORT=${PORT:-8123}
URL=http://127.0.0.1:$PORT
PONDER=${PONDER:-.venv/bin/ponder}
EVAL=(--dataset arithmetic --levels 1 --limit 100)
FEW_SHOT=$'Solve the problem step by step. Put the final answer in \\boxed{}.\n\nExample.\nProblem: Mia has 12 coins. Then Mia gets 5 more coins. How many coins does Mia have now?\nSolution: Mia starts with 12 coins.\n\nShe gets 5 more: 12 + 5 = 17.\n\nThe answer is \\boxed{17}.\n\nExample.\nProblem: Ben has 3 boxes with 6 pens in each box. How many pens does Ben have now?\nSolution: There are 3 boxes of 6 pens.\n\n3 * 6 = 18.\n\nThe answer is \\boxed{18}.'

serve() {  # serve [ponder serve flags...]: start in the background, wait for /health
  "$PONDER" serve --enforce-eager --port "$PORT" "$@" >"$WORK/serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 300); do curl -sf "$URL/health" >/dev/null && return 0; sleep 2; done
  echo "server did not start; see $WORK/serve.log" >&2; return 1
}
stop() { kill "$SERVER"; wait "$SERVER" || true; }
greedy() {  # greedy OUT [LEVEL]: one greedy answer per evaluation problem
  "$PONDER" bench --server "$URL" --dataset arithmetic --levels "${2:-1}" --limit 100 \
    --concurrency 8 --no-progress \
    --run "best_of_n n=1 temperature=0 label=greedy" --param max_new_tokens=256 \
    --out "$WORK/$1"
}

bon8_learned() {  # bon8_learned OUT: best-of-8 with the learned PRM, level 1
  "$PONDER" bench --server "$URL" "${EVAL[@]}" --concurrency 6 --no-progress \
    --param max_new_tokens=256 \
    --run "best_of_n n=8 selection=weighted reward=learned label=learned" \
    --out "$WORK/$1"
}

case "${1:-}" in
collect)  # training data: best-of-8 on problems disjoint from the evaluation set.
  # Two runs were made (both stopped early, when the time set aside ran out; they
  # resume): seed 8 with the default sampling (top_p 0.95), and seed 7 with top_p 1.0.
  serve --reward arithmetic
  "$PONDER" learn collect --server "$URL" --dataset arithmetic --levels 1,2 --seed 8 \
    --limit 300 --samples 8 --reward arithmetic --param max_new_tokens=256 \
    --drop-overlap --concurrency 4 --no-progress --out "$WORK/collect-p95"
  "$PONDER" learn collect --server "$URL" --dataset arithmetic --levels 1,2 --seed 7 \
    --limit 300 --samples 8 --reward arithmetic --param max_new_tokens=256 \
    --param top_p=1.0 --drop-overlap --concurrency 4 --no-progress --out "$WORK/collect-train"
  stop ;;
train)  # a PRM on outcome labels (balanced), and the policy on its right samples
  for run in collect-p95 collect-train; do
    "$PONDER" learn export "$WORK/$run" --format prm --labels outcome \
      --wrong-per-right 2 --out "$WORK/prm-$run.jsonl" --overwrite
    "$PONDER" learn export "$WORK/$run" --format sft --out "$WORK/sft-$run.jsonl" --overwrite
  done
  cat "$WORK"/prm-collect-*.jsonl >"$WORK/prm-all.jsonl"
  cat "$WORK"/sft-collect-*.jsonl >"$WORK/sft-all.jsonl"
  # (A first PRM, --wrong-per-right 3, 2 epochs at lr 3e-5, stayed at validation AUROC
  # 0.53: the `+`/`-` logits hardly moved. This is the second.)
  "$PONDER" learn train-prm "$WORK/prm-all.jsonl" --out "$WORK/models/prm-v2" --epochs 3 \
    --lr 1e-4 --val-fraction 0.15 --overwrite
  "$PONDER" learn train-policy "$WORK/sft-all.jsonl" --method sft \
    --out "$WORK/models/policy-ei1" --epochs 3 --lr 5e-5 --overwrite ;;
eval-base)  # the base policy: the learned PRM's best-of-8, greedy, a few-shot prompt,
  # beam search. The verifier's best-of-8 on the same samples is the published one
  # (clients/bench/published/arithmetic-rewards: same seeds, same samples).
  serve --reward "learned=math-shepherd:$WORK/models/prm-v2"
  "$PONDER" bench --server "$URL" "${EVAL[@]}" --concurrency 6 --no-progress \
    --run "best_of_n n=8 selection=weighted reward=learned label=learned" \
    --param max_new_tokens=256 --out "$WORK/eval-base"
  greedy eval-greedy-l1
  "$PONDER" bench --server "$URL" "${EVAL[@]}" --concurrency 4 --no-progress \
    --run "best_of_n n=1 temperature=0 label=greedy-few-shot" --param max_new_tokens=256 \
    --param "system_prompt=$FEW_SHOT" --out "$WORK/eval-few-shot"
  "$PONDER" bench --server "$URL" "${EVAL[@]}" --concurrency 8 --no-progress \
    --run "beam_search n=8 beam_width=2 max_step_tokens=48 reward=learned budget.max_tokens=128,256 label=beam_search/learned" \
    --param max_new_tokens=256 --out "$WORK/eval-base"
  stop ;;
eval-policy)  # the fine-tuned policy: greedy, and best-of-8 with the learned PRM (50)
  serve --policy "$WORK/models/policy-ei1" --served-model-name policy-ei1 \
    --reward "learned=math-shepherd:$WORK/models/prm-v2"
  greedy eval-policy-greedy-l1
  "$PONDER" bench --server "$URL" --dataset arithmetic --levels 1 --limit 50 \
    --concurrency 6 --no-progress --param max_new_tokens=256 \
    --run "best_of_n n=8 selection=weighted reward=learned label=learned" \
    --out "$WORK/eval-policy"
  stop ;;
round2)  # expert iteration, round 2: the round-1 policy's best-of-8 on all 100
  # evaluation problems (4b was measured on the first 50), its greedy level-2 answers,
  # and new training data from it (seed 9, disjoint from the evaluation set); then a
  # policy trained from the base on the right samples of both rounds.
  serve --policy "$WORK/models/policy-ei1" --served-model-name policy-ei1 \
    --reward "learned=math-shepherd:$WORK/models/prm-v2"
  bon8_learned eval-policy
  greedy eval-policy-greedy-l2 2
  "$PONDER" learn collect --server "$URL" --dataset arithmetic --levels 1,2 --seed 9 \
    --limit 100 --samples 8 --param max_new_tokens=256 \
    --drop-overlap --concurrency 6 --no-progress --out "$WORK/collect-ei1"
  stop
  "$PONDER" learn export "$WORK/collect-ei1" --format sft --out "$WORK/sft-collect-ei1.jsonl" --overwrite
  cat "$WORK/sft-all.jsonl" "$WORK/sft-collect-ei1.jsonl" >"$WORK/sft-round2.jsonl"
  "$PONDER" learn train-policy "$WORK/sft-round2.jsonl" --method sft \
    --out "$WORK/models/policy-ei2" --epochs 3 --lr 5e-5 --overwrite ;;
eval-round2)  # the round-2 policy: greedy on both levels
  serve --policy "$WORK/models/policy-ei2" --served-model-name policy-ei2
  greedy eval-ei2-greedy-l1 1
  greedy eval-ei2-greedy-l2 2
  stop ;;
eval-round2-bon8)  # the round-2 policy's best-of-8 with the learned PRM
  serve --policy "$WORK/models/policy-ei2" --served-model-name policy-ei2 \
    --reward "learned=math-shepherd:$WORK/models/prm-v2"
  bon8_learned eval-ei2
  stop ;;
eval-level2)  # the base policy on level 2: greedy, and best-of-8 under the learned PRM
  # and the verifier (same seeds, so the same samples; their ensemble is computed from
  # the two runs' sample scores by `ponder bench ensemble`, in the report stage)
  serve --reward "learned=math-shepherd:$WORK/models/prm-v2" --reward "learned,arithmetic"
  greedy eval-greedy-l2 2
  for reward in learned arithmetic; do
    "$PONDER" bench --server "$URL" --dataset arithmetic --levels 2 --limit 25 \
      --concurrency 6 --no-progress --param max_new_tokens=256 \
      --run "best_of_n n=8 selection=weighted reward=$reward label=$reward" \
      --out "$WORK/eval-level2"
  done
  stop ;;
dpo)  # DPO from the base policy on the right/wrong pairs of the round-1 collections
  # (the data round-1 SFT learnt from), measured greedy as SFT was
  for run in collect-p95 collect-train; do
    "$PONDER" learn export "$WORK/$run" --format dpo --out "$WORK/dpo-$run.jsonl" --overwrite
  done
  cat "$WORK"/dpo-collect-p95.jsonl "$WORK"/dpo-collect-train.jsonl >"$WORK/dpo-all.jsonl"
  "$PONDER" learn train-policy "$WORK/dpo-all.jsonl" --method dpo \
    --out "$WORK/models/policy-dpo" --epochs 2 --overwrite
  serve --policy "$WORK/models/policy-dpo" --served-model-name policy-dpo
  greedy eval-dpo-greedy-l1 1
  stop ;;
search-learned)  # DVTS and MCTS with the learned PRM on the base policy, at the budgets
  # beam search was run at (the verifier's cells are the published sweep's)
  serve --reward "learned=math-shepherd:$WORK/models/prm-v2"
  "$PONDER" bench --server "$URL" "${EVAL[@]}" --concurrency 8 --no-progress \
    --param max_new_tokens=256 \
    --run "dvts n=8 beam_width=2 max_step_tokens=48 reward=learned budget.max_tokens=128,256 label=dvts/learned" \
    --run "mcts simulations=64 expansion_width=2 wave_size=4 max_step_tokens=48 reward=learned budget.max_tokens=128,256 label=mcts/learned" \
    --out "$WORK/eval-base"
  stop ;;
report)
  out=learning/published
  pub=clients/bench/published
  for run in eval-base eval-greedy-l1 eval-few-shot eval-policy eval-policy-greedy-l1 \
      eval-policy-greedy-l2 eval-ei2-greedy-l1 eval-ei2-greedy-l2 eval-greedy-l2 eval-level2 eval-ei2 \
      eval-dpo-greedy-l1; do
    [ -d "$WORK/$run" ] || continue
    mkdir -p "$out/$run"
    cp "$WORK/$run"/{results.jsonl,summary.csv,coverage.csv,commands.txt} "$out/$run/" 2>/dev/null || true
  done
  for model in prm-v2 policy-ei1 policy-ei2 policy-dpo; do
    [ -f "$WORK/models/$model/card.json" ] && cp "$WORK/models/$model/card.json" "$out/$model.card.json"
  done
  # The learned PRM + verifier ensemble (mean of the two sample scores), replayed from
  # the runs that drew the same samples under each reward.
  rm -rf "$out/ensemble-l1" "$out/ensemble-l2"
  "$PONDER" bench ensemble "$out/eval-base:learned" "$pub/arithmetic-100:best_of_n" \
    --out "$out/ensemble-l1" >/dev/null
  if [ -d "$out/eval-level2" ]; then
    "$PONDER" bench ensemble "$out/eval-level2:learned" "$out/eval-level2:arithmetic" \
      --out "$out/ensemble-l2" >/dev/null
  fi
  l2=()
  if [ -d "$out/eval-level2" ]; then
    l2=(--pair "$out/eval-level2:learned/weighted:n=8" "$out/eval-level2:arithmetic/weighted:n=8"
        --pair "$out/ensemble-l2:ensemble/weighted:n=8" "$out/eval-level2:arithmetic/weighted:n=8"
        --pair "$out/eval-policy-greedy-l2:greedy/majority:n=1" "$out/eval-greedy-l2:greedy/majority:n=1")
  fi
  dpo=()
  if [ -d "$out/eval-dpo-greedy-l1" ]; then
    dpo=(--line "DPO policy, greedy=$out/eval-dpo-greedy-l1:greedy/majority"
         --pair "$out/eval-dpo-greedy-l1:greedy/majority:n=1" "$out/eval-greedy-l1:greedy/majority:n=1"
         --pair "$out/eval-dpo-greedy-l1:greedy/majority:n=1" "$out/eval-policy-greedy-l1:greedy/majority:n=1")
  fi
  ei2=()
  if [ -d "$out/eval-ei2-greedy-l1" ]; then
    ei2=(--line "policy after round 2, greedy=$out/eval-ei2-greedy-l1:greedy/majority"
         --pair "$out/eval-ei2-greedy-l1:greedy/majority:n=1" "$out/eval-greedy-l1:greedy/majority:n=1"
         --pair "$out/eval-ei2-greedy-l1:greedy/majority:n=1" "$out/eval-policy-greedy-l1:greedy/majority:n=1"
         --pair "$out/eval-ei2-greedy-l2:greedy/majority:n=1" "$out/eval-greedy-l2:greedy/majority:n=1")
  fi
  "$PONDER" bench compare \
    --line "base policy + verifier=$pub/arithmetic-100:best_of_n/weighted" \
    --line "base policy + learned PRM=$out/eval-base:learned/weighted" \
    --line "base policy + learned PRM and verifier (ensemble)=$out/ensemble-l1:ensemble/weighted" \
    --line "base policy + learned PRM, beam search=$out/eval-base:beam_search/learned" \
    --line "base policy + learned PRM, DVTS=$out/eval-base:dvts/learned" \
    --line "base policy + learned PRM, MCTS=$out/eval-base:mcts/learned" \
    --line "SFT policy + learned PRM=$out/eval-policy:learned/weighted" \
    --line "base policy, greedy=$out/eval-greedy-l1:greedy/majority" \
    --line "SFT policy, greedy=$out/eval-policy-greedy-l1:greedy/majority" \
    "${ei2[@]}" \
    --pair "$out/eval-base:learned/weighted:n=8" "$pub/arithmetic-100:best_of_n/weighted:n=8" \
    --pair "$out/eval-base:learned/max_reward:n=8" "$pub/arithmetic-100:best_of_n/max_reward:n=8" \
    --pair "$out/ensemble-l1:ensemble/weighted:n=8" "$pub/arithmetic-100:best_of_n/weighted:n=8" \
    --pair "$out/ensemble-l1:ensemble/max_reward:n=8" "$pub/arithmetic-100:best_of_n/max_reward:n=8" \
    --pair "$out/eval-base:learned/weighted:n=8" "$out/eval-base:learned/majority:n=8" \
    --pair "$out/eval-base:beam_search/learned:budget.max_tokens=128" "$out/eval-base:learned/weighted:n=1" \
    --pair "$out/eval-base:beam_search/learned:budget.max_tokens=256" "$out/eval-base:learned/weighted:n=2" \
    --pair "$out/eval-base:dvts/learned:budget.max_tokens=128" "$out/eval-base:learned/weighted:n=1" \
    --pair "$out/eval-base:dvts/learned:budget.max_tokens=256" "$out/eval-base:learned/weighted:n=2" \
    --pair "$out/eval-base:mcts/learned:budget.max_tokens=128" "$out/eval-base:learned/weighted:n=1" \
    --pair "$out/eval-base:mcts/learned:budget.max_tokens=256" "$out/eval-base:learned/weighted:n=2" \
    --pair "$out/eval-policy-greedy-l1:greedy/majority:n=1" "$out/eval-greedy-l1:greedy/majority:n=1" \
    --pair "$out/eval-policy:learned/weighted:n=8" "$out/eval-base:learned/weighted:n=8" \
    --pair "$out/eval-few-shot:greedy-few-shot/majority:n=1" "$out/eval-greedy-l1:greedy/majority:n=1" \
    "${l2[@]}" "${dpo[@]}" \
    --plot "$out/plot.png" --title "arithmetic level 1 (100 problems)" \
    | tee "$out/compare.md" ;;
*) echo "usage: $0 collect|train|eval-base|eval-policy|round2|eval-round2|eval-round2-bon8|eval-level2|dpo|search-learned|report" >&2; exit 2 ;;
esac
