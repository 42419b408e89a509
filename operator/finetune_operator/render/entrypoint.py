"""The training container's entrypoint: a fixed script; everything the user wrote reaches it as data.

The chart pasted prescript, the trainer command and postscript into one `sh -c` string, so the Job's
exit status was that of postscript's last line, and quoting in user text could break the script.
Here prescript and postscript are files in the ConfigMap and paths come from the environment.
"""

from __future__ import annotations

from finetune_operator.api.base import TRAINER_CONTAINER, TRAINING_COMPLETE

CONTAINER_NAME = TRAINER_CONTAINER
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TRAINER_COMMAND = "phisonai2"
COMPLETE_MARKER = TRAINING_COMPLETE

# Environment of the training container (names are a contract with the script below).
ENV_OUTPUT_DIR = "FTO_OUTPUT_DIR"
ENV_LOG_FILE = "FTO_LOG_FILE"
ENV_ENV_CONFIG = "FTO_ENV_CONFIG"
ENV_EXP_CONFIG = "FTO_EXP_CONFIG"
ENV_PRESCRIPT = "FTO_PRESCRIPT"
ENV_POSTSCRIPT = "FTO_POSTSCRIPT"

# Exit codes the script itself chooses (a failing trainer's own non-zero code is passed on).
EXIT_INCOMPLETE = 3  # the trainer exited 0 but never logged `training complete!`
EXIT_NO_OUTPUT_DIR = 4

# POSIX sh: the vendor image's shell is not known. No `set -u`: the chart had none, and scripts
# written for it may read unset variables. The prescript is sourced, as the chart did, so its
# exports and mounts reach the trainer; the postscript runs in a subshell so that an `exit` in it
# cannot hide the trainer's verdict.
_SCRIPT = r"""# Rendered by finetune-operator. User text arrives as files and environment only.
termination="${FTO_TERMINATION_LOG:-/dev/termination-log}"
trainer="${FTO_TRAINER:-@TRAINER_COMMAND@}"
stage=Prescript
reported=no

say() { printf '[finetune-operator] %s\n' "$*"; }

report() {  # verdict reason exit-code evidence
  step=0; loss=""
  if [ -f "$FTO_LOG_FILE" ]; then
    step=$(grep -c -e '\[PHISON END\]' -- "$FTO_LOG_FILE" 2>/dev/null)
    loss=$(grep -o -e '\[Loss\]:[^[:space:]]*' -- "$FTO_LOG_FILE" 2>/dev/null | tail -n 1 | cut -d: -f2 | cut -c1-64)
  fi
  {
    printf 'verdict: %s\n' "$1"
    printf 'reason: %s\n' "$2"
    printf 'exitCode: %s\n' "$3"
    printf 'step: %s\n' "${step:-0}"
    printf 'loss: %s\n' "$loss"
    printf 'evidence: %s\n' "$(printf '%s' "$4" | tr -d '\r' | head -n 1 | cut -c1-1500)"
  } > "$termination" 2>/dev/null
  reported=yes
}

on_exit() {
  code=$?
  if [ "$reported" = no ]; then
    report failed "${stage}Failed" "$code" "the $stage stage exited with status $code"
  fi
}
trap on_exit EXIT

if [ -s "$FTO_PRESCRIPT" ]; then
  say "running the prescript"
  . "$FTO_PRESCRIPT"
  set +e
fi

stage=Setup
if ! mkdir -p -- "$FTO_OUTPUT_DIR" "$(dirname -- "$FTO_LOG_FILE")"; then
  report failed OutputDirUnavailable @EXIT_NO_OUTPUT_DIR@ "cannot create the output directory $FTO_OUTPUT_DIR"
  exit @EXIT_NO_OUTPUT_DIR@
fi
if [ -e "$FTO_LOG_FILE" ]; then
  # A retry must not read the verdict of the attempt before it; keep that log beside.
  mv -- "$FTO_LOG_FILE" "$FTO_LOG_FILE.$(date +%Y%m%dT%H%M%S).previous"
fi
: > "$FTO_LOG_FILE"
if [ -n "$FTO_MULTI_NODE_ENV_FILE" ]; then
  # The rank's wiring, for a trainer that reads it from env_config's multi_node_env_path.
  if ! mkdir -p -- "$(dirname -- "$FTO_MULTI_NODE_ENV_FILE")" || ! printf \
    'MASTER_ADDR=%s\nMASTER_PORT=%s\nNODE_RANK=%s\nNNODES=%s\nNPROC_PER_NODE=%s\nWORLD_SIZE=%s\n' \
    "$MASTER_ADDR" "$MASTER_PORT" "$NODE_RANK" "$NNODES" "$NPROC_PER_NODE" "$WORLD_SIZE" \
    > "$FTO_MULTI_NODE_ENV_FILE"; then
    report failed OutputDirUnavailable @EXIT_NO_OUTPUT_DIR@ "cannot write $FTO_MULTI_NODE_ENV_FILE"
    exit @EXIT_NO_OUTPUT_DIR@
  fi
fi
tail -n +1 -F -- "$FTO_LOG_FILE" 2>/dev/null &
tail_pid=$!

stage=Trainer
say "starting $trainer"
"$trainer" --env_config "$FTO_ENV_CONFIG" --exp_config "$FTO_EXP_CONFIG"
code=$?
sleep 2
kill "$tail_pid" 2>/dev/null
wait "$tail_pid" 2>/dev/null

failure=$(grep -E -e 'exits with return code = [1-9][0-9]*' -- "$FTO_LOG_FILE" | tail -n 1)
if [ "$code" -ne 0 ]; then
  verdict=failed; reason=TrainerExitCode; status=$code
  evidence=${failure:-"$trainer exited with status $code"}
elif [ -n "$failure" ]; then
  verdict=failed; reason=TrainerReportedFailure; status=1; evidence=$failure
elif grep -q -F -e '@COMPLETE@' -- "$FTO_LOG_FILE"; then
  verdict=succeeded; reason=TrainingComplete; status=0
  evidence=$(grep -F -e '@COMPLETE@' -- "$FTO_LOG_FILE" | tail -n 1)
else
  verdict=failed; reason=TrainingIncomplete; status=@EXIT_INCOMPLETE@
  evidence="$trainer exited 0 but its log has no '@COMPLETE@': $(tail -n 1 -- "$FTO_LOG_FILE")"
fi
say "trainer verdict: $verdict ($reason)"

stage=Postscript
if [ -s "$FTO_POSTSCRIPT" ]; then
  say "running the postscript"
  ( . "$FTO_POSTSCRIPT" )
  post=$?
  if [ "$post" -ne 0 ] && [ "$verdict" = succeeded ]; then
    verdict=failed; reason=PostscriptFailed; status=$post
    evidence="the postscript exited with status $post"
  fi
fi

report "$verdict" "$reason" "$status" "$evidence"
exit "$status"
"""


def _filled(script: str, facts: dict[str, str]) -> str:
    """The script with the operator's own constants in place (never user text: that comes as data)."""
    for name, value in facts.items():
        script = script.replace(f"@{name}@", value)
    assert "@" not in script.replace("$@", ""), "an unfilled @NAME@ in the entrypoint"
    return script


ENTRYPOINT = _filled(
    _SCRIPT,
    {
        "TRAINER_COMMAND": TRAINER_COMMAND,
        "COMPLETE": COMPLETE_MARKER,
        "EXIT_INCOMPLETE": str(EXIT_INCOMPLETE),
        "EXIT_NO_OUTPUT_DIR": str(EXIT_NO_OUTPUT_DIR),
    },
)
