"""The training container's entrypoint: a fixed script; everything the user wrote reaches it as data.

The chart pasted prescript, the trainer command and postscript into one `sh -c` string, so the Job's
exit status was that of postscript's last line, and quoting in user text could break the script.
Here prescript and postscript are files in the ConfigMap and paths come from the environment.
"""

from __future__ import annotations

import re

from finetune_operator.api.base import OUTPUT_PUSH_FAILED, RANK_PLACEHOLDER, TRAINER_CONTAINER, TRAINING_COMPLETE

CONTAINER_NAME = TRAINER_CONTAINER
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TRAINER_COMMAND = "phisonai2"
COMPLETE_MARKER = TRAINING_COMPLETE

# Environment of the training container (names are a contract with the script below).
ENV_OUTPUT_DIR = "FTO_OUTPUT_DIR"
ENV_LOG_FILE = "FTO_LOG_FILE"
ENV_ENV_CONFIG = "FTO_ENV_CONFIG"
ENV_ENV_CONFIG_TEMPLATE = "FTO_ENV_CONFIG_TEMPLATE"
ENV_EXP_CONFIG = "FTO_EXP_CONFIG"
ENV_PRESCRIPT = "FTO_PRESCRIPT"
# Seconds the log's tail is let run after the trainer's end, for its last lines to reach the pod log
# (tail -F reads every second). Never set in a pod; the tests set 0.
ENV_LOG_DRAIN_SECONDS = "FTO_LOG_DRAIN_SECONDS"
ENV_POSTSCRIPT = "FTO_POSTSCRIPT"

# The push step (issue 14): after a successful training, rank 0 pushes outputDir as an OCI artifact.
ENV_PUSH_FORMAT = "FTO_PUSH_FORMAT"  # empty or unset: no push; else one of the PUSH_FORMAT_ names
ENV_PUSH_REFERENCE = "FTO_PUSH_REFERENCE"  # registry/repository:tag, validated by the operator
ENV_PUSH_INSECURE = "FTO_PUSH_INSECURE"  # "true": plain HTTP (crane --insecure, kit --plain-http)
ENV_PUSH_TOOLS = "FTO_PUSH_TOOLS"  # directory of the copied tool binaries: crane, and kit for ModelKit/ModelPack
ENV_PUSH_BASE_IMAGE = "FTO_PUSH_BASE_IMAGE"  # Image format only: the base image crane appends to
# Scratch space for one copy of outputDir (the Image's tar, kit's storage); default $TMPDIR, else /tmp.
ENV_PUSH_WORK_DIR = "FTO_PUSH_WORK_DIR"
# The scratch space's size in KiB (its emptyDir's sizeLimit): an output that would not fit is not copied.
ENV_PUSH_WORK_LIMIT_KIB = "FTO_PUSH_WORK_LIMIT_KIB"
ENV_DOCKER_CONFIG = "DOCKER_CONFIG"  # directory holding the push Secret's config.json (read by crane and kit)
PUSH_FORMAT_MODELKIT = "ModelKit"
PUSH_FORMAT_MODELPACK = "ModelPack"
PUSH_FORMAT_IMAGE = "Image"
REASON_PUSH_FAILED = OUTPUT_PUSH_FAILED

# Lines the push step adds to the termination message after a successful push.
TERM_OUTPUT_REFERENCE = "outputReference"  # <registry>/<repository>@sha256:<hex>
TERM_OUTPUT_TAG = "outputTag"  # the pushed FTO_PUSH_REFERENCE, as given
TERM_OUTPUT_DIGEST = "outputDigest"  # sha256:<64 hex>, the manifest digest the registry serves for the tag
TERM_PUSHED_TIME = "pushedTime"  # UTC RFC 3339, e.g. 2026-11-29T04:40:18Z

# Exit codes the script itself chooses (a failing trainer's own non-zero code is passed on).
EXIT_INCOMPLETE = 3  # the trainer exited 0 but never logged `training complete!`
EXIT_NO_OUTPUT_DIR = 4
EXIT_PUSH_FAILED = 5  # the training succeeded, pushing its output did not (reason OutputPushFailed)
# The run ended with status 0 before its verdict (an `exit` or `exec` in the prescript): not a success.
EXIT_ENDED_EARLY = 6

# POSIX sh: the vendor image's shell is not known. No `set -u`: the chart had none, and scripts
# written for it may read unset variables. The run (prescript, trainer, postscript, push) happens in a
# subshell: the prescript is sourced into it, as the chart did, so its exports, working directory,
# limits and mounts reach the trainer; the shell outside, which the prescript cannot reach (its exit,
# exec, traps or set -eu stay in the run's shell), judges how the run ended and chooses the exit
# status. The postscript runs in a subshell of the run's, so that an `exit` in it cannot hide the
# trainer's verdict.
_SCRIPT = r"""# Rendered by finetune-operator. User text arrives as files and environment only.
fto_settings() {  # set again after the prescript, whose variables may bear the same names
  termination="${FTO_TERMINATION_LOG:-/dev/termination-log}"
  trainer="${FTO_TRAINER:-@TRAINER_COMMAND@}"
  pushed_digest=""
}
fto_settings

fto_wait_for() {  # pid: sets waited to its exit status, also when a trap ends `wait` before it ends
  wait "$1"
  waited=$?
  while kill -0 "$1" 2>/dev/null; do
    wait "$1"
    waited=$?
  done
}

fto_say() { printf '[finetune-operator] %s\n' "$*"; }
fto_one_line() { printf '%s' "$1" | tr '\r\n' '  ' | cut -c1-1000; }

fto_report() {  # verdict reason exit-code evidence
  step=0; loss=""
  if [ -f "${FTO_LOG_FILE:-}" ]; then
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
    if [ -n "$pushed_digest" ]; then
      printf 'outputReference: %s\n' "$(fto_one_line "$pushed_repository@$pushed_digest")"
      printf 'outputTag: %s\n' "$(fto_one_line "$FTO_PUSH_REFERENCE")"
      printf 'outputDigest: %s\n' "$pushed_digest"
      printf 'pushedTime: %s\n' "$pushed_time"
    fi
  } > "$termination" 2>/dev/null
}

fto_enter() {  # stage: how far the run came, for the judge should it end before its verdict
  stage=$1
  printf 'stage: %s\n' "$1" > "$termination" 2>/dev/null
}

fto_summary_field() {  # key: its value in the termination message, as the run left it
  sed -n "s/^$1: //p" -- "$termination" 2>/dev/null | head -n 1
}

fto_judge() {  # the run's exit status: the entrypoint's, told by the run's verdict, never by the run alone
  verdict=$(fto_summary_field verdict)
  if [ "$verdict" = succeeded ] && [ "$1" -eq 0 ]; then
    exit 0
  fi
  if [ "$verdict" = failed ]; then
    said=$(fto_summary_field exitCode)
    case "$said" in ""|*[!0-9]*|0) said=$1 ;; esac
    [ "$said" -ne 0 ] 2>/dev/null || said=1
    exit "$said"
  fi
  stage=$(fto_summary_field stage)
  status=$1
  if [ "$verdict" = succeeded ]; then  # only an exit trap the prescript set runs after the report
    evidence="the run reported success but ended with status $1 (an exit trap of the prescript?)"
    stage=Prescript
  elif [ "$1" -ne 0 ]; then
    evidence="the ${stage:=Prescript} stage exited with status $1"
  else  # exit 0, exec, a trap: nothing the trainer did
    status=@EXIT_ENDED_EARLY@
    evidence="the ${stage:=Prescript} stage ended the run (exit or exec) with status 0 before the trainer's verdict"
    if [ "$stage" = Prescript ]; then evidence="$evidence; end a prescript early with return, not exit"; fi
  fi
  fto_report failed "${stage}Failed" "$status" "$evidence"
  exit "$status"
}

# The push step: runs only on a training judged succeeded, and only on rank 0. The tools' output goes
# to the log; the credentials stay in $DOCKER_CONFIG/config.json, read by the tools and never by us.
fto_last_words() {  # file: its last "Error..." line with the lines after it (errors span lines), else its last line
  tr -d '\r' < "$1" 2>/dev/null | awk '/[^[:space:]]/ {
    if ($0 ~ /^Error/) err = $0; else if (err != "") err = err " " $0
    last = $0
  } END { print (err != "" ? err : last) }'
}

fto_push_run() {  # tool args...: run a tool into $work/out and $work/err, then show both in the log
  push_tool=$1; shift
  "$FTO_PUSH_TOOLS/$push_tool" "$@" > "$work/out" 2> "$work/err" < /dev/null
  push_rc=$?
  cat -- "$work/out" "$work/err" 2>/dev/null
  if [ "$push_rc" -ne 0 ]; then  # the tool's own last words: stderr's last line, else stdout's
    push_error=$(fto_last_words "$work/err")
    [ -n "$push_error" ] || push_error=$(fto_last_words "$work/out")
    push_error="$push_tool: ${push_error:-exited with status $push_rc}"
  fi
  return "$push_rc"
}

fto_push_tool_missing() {  # tool: true (with push_error set) when $FTO_PUSH_TOOLS/tool cannot run
  if [ -x "${FTO_PUSH_TOOLS:-}/$1" ]; then return 1; fi
  push_error="$1 not found at ${FTO_PUSH_TOOLS:-}/$1"
}

# Argument lists are built with `set --` (never by splitting a string), so no text is ever re-parsed.
fto_push_image() {  # tar of outputDir, appended as one layer to an empty OCI image (or the base image)
  if ! tar -C "$FTO_OUTPUT_DIR" -cf "$work/output.tar" . 2> "$work/err"; then
    push_error="tar: $(tail -n 1 -- "$work/err" | tr -d '\r')"; return 1
  fi
  # crane splits --new_layer at commas: the tar is named relative to $work, where crane runs.
  set -- append --new_layer=output.tar --new_tag="$FTO_PUSH_REFERENCE"
  if [ -n "${FTO_PUSH_BASE_IMAGE:-}" ]; then
    set -- "$@" --base="$FTO_PUSH_BASE_IMAGE"
  else
    set -- "$@" --oci-empty-base
  fi
  if [ "${FTO_PUSH_INSECURE:-}" = true ]; then set -- "$@" --insecure; fi
  cd -- "$work" || { push_error="cannot enter $work"; return 1; }
  fto_push_run crane "$@"
  set -- "$?"
  cd -- "$push_cwd" || return 1
  return "$1"
}

fto_push_kit() {  # kit init (unless outputDir has a Kitfile), kit pack [--use-model-pack], kit push
  # kit keeps its storage and settings in KITOPS_HOME; it reads credentials from
  # KITOPS_HOME/credentials.json (Docker's config.json format: linked here, never copied or read by
  # us), newer versions from $DOCKER_CONFIG too. The flag file stops its update check (a network call).
  KITOPS_HOME="$work/kitops"; export KITOPS_HOME
  if ! { mkdir -p -- "$KITOPS_HOME" && : > "$KITOPS_HOME/disable-update-notifications"; }; then
    push_error="cannot create $KITOPS_HOME"; return 1
  fi
  docker_config="${DOCKER_CONFIG:-${HOME:-/root}/.docker}/config.json"
  if [ -f "$docker_config" ]; then ln -s -- "$docker_config" "$KITOPS_HOME/credentials.json"; fi
  if [ ! -e "$FTO_OUTPUT_DIR/Kitfile" ]; then  # a Kitfile already there (the postscript's) is used as is
    fto_push_run kit init --name="${pushed_repository##*/}" --desc="fine-tuned by finetune-operator" \
      --force -- "$FTO_OUTPUT_DIR" || return 1
  fi
  set -- pack --tag="$FTO_PUSH_REFERENCE"
  if [ "$FTO_PUSH_FORMAT" = @FORMAT_MODELPACK@ ]; then set -- "$@" --use-model-pack; fi
  fto_push_run kit "$@" -- "$FTO_OUTPUT_DIR" || return 1
  set -- push
  if [ "${FTO_PUSH_INSECURE:-}" = true ]; then set -- "$@" --plain-http; fi
  fto_push_run kit "$@" -- "$FTO_PUSH_REFERENCE"
}

fto_push_digest() {  # the digest of the manifest the registry serves for the tag, whichever tool pushed it
  set -- digest
  if [ "${FTO_PUSH_INSECURE:-}" = true ]; then set -- "$@" --insecure; fi
  fto_push_run crane "$@" -- "$FTO_PUSH_REFERENCE" || return 1
  digest=$(tr -d '\r\n' < "$work/out")
  hex=${digest#sha256:}
  case "$digest" in sha256:*) ;; *) hex=x ;; esac
  case "$hex" in *[!0-9a-f]*|"") hex=x ;; esac
  if [ "${#hex}" -ne 64 ]; then
    push_error="crane digest answered '$(fto_one_line "$digest")', not a sha256 digest"; return 1
  fi
  pushed_digest=$digest
}

fto_push_fits() {  # true when one copy of outputDir fits the scratch's bound (with 5 % and 1 MiB to spare)
  case "${FTO_PUSH_WORK_LIMIT_KIB:-}" in ""|*[!0-9]*) return 0 ;; esac
  used=$(du -sk -- "$FTO_OUTPUT_DIR" 2>/dev/null | cut -f1)
  case "$used" in ""|*[!0-9]*) return 0 ;; esac
  if [ $((used + used / 20 + 1024)) -gt "$FTO_PUSH_WORK_LIMIT_KIB" ]; then
    push_error="the output ($used KiB in $FTO_OUTPUT_DIR) does not fit the push's scratch space"
    push_error="$push_error ($FTO_PUSH_WORK_LIMIT_KIB KiB: raise spec.output.image.workSizeLimit)"
    return 1
  fi
}

fto_push_output() {  # sets pushed_digest, pushed_repository and pushed_time, or push_error
  push_error=""
  last=${FTO_PUSH_REFERENCE##*/}
  case "$last" in
    *:*) pushed_repository=${FTO_PUSH_REFERENCE%:*} ;;
    *) pushed_repository=$FTO_PUSH_REFERENCE ;;
  esac
  case "$FTO_PUSH_FORMAT" in
    @FORMAT_IMAGE@) fto_push_tool_missing crane && return 1 ;;
    @FORMAT_MODELKIT@|@FORMAT_MODELPACK@) { fto_push_tool_missing kit || fto_push_tool_missing crane; } && return 1 ;;
    *) push_error="unknown push format '$(fto_one_line "$FTO_PUSH_FORMAT")'"; return 1 ;;
  esac
  fto_push_fits || return 1
  scratch="${FTO_PUSH_WORK_DIR:-${TMPDIR:-/tmp}}"
  mkdir -p -- "$scratch" 2>/dev/null
  work=$(mktemp -d "$scratch/fto-push.XXXXXX" 2>/dev/null) || {
    work="$scratch/fto-push.$$"
    mkdir -m 700 -- "$work" 2>/dev/null
  } || { push_error="cannot create a scratch directory in $scratch"; return 1; }
  push_cwd=$(pwd)
  work=$(cd -- "$work" && pwd) || { push_error="cannot enter $work"; return 1; }
  fto_say "pushing $FTO_OUTPUT_DIR as $FTO_PUSH_FORMAT to $(fto_one_line "$FTO_PUSH_REFERENCE")"
  if [ "$FTO_PUSH_FORMAT" = @FORMAT_IMAGE@ ]; then fto_push_image; else fto_push_kit; fi && fto_push_digest
  push_ok=$?
  rm -rf -- "$work"
  [ "$push_ok" -eq 0 ] || return 1
  pushed_time=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  fto_say "pushed $(fto_one_line "$pushed_repository@$pushed_digest") (tag $(fto_one_line "$FTO_PUSH_REFERENCE"))"
}

fto_prepare() {  # what the trainer needs, made after the prescript (which may mount outputDir's volume)
  if ! mkdir -p -- "$FTO_OUTPUT_DIR" "$(dirname -- "$FTO_LOG_FILE")"; then
    fto_report failed OutputDirUnavailable @EXIT_NO_OUTPUT_DIR@ "cannot create the output directory $FTO_OUTPUT_DIR"
    exit @EXIT_NO_OUTPUT_DIR@
  fi
  if [ -e "$FTO_LOG_FILE" ]; then
    # A retry must not read the verdict of the attempt before it; keep that log beside.
    mv -- "$FTO_LOG_FILE" "$FTO_LOG_FILE.$(date +%Y%m%dT%H%M%S).previous"
  fi
  : > "$FTO_LOG_FILE"
  if [ -n "${FTO_ENV_CONFIG_TEMPLATE:-}" ]; then
    # The ConfigMap holds one env_config for all ranks: this rank's own, its number in its names.
    case "${NODE_RANK:-}" in
      ""|*[!0-9]*)
        fto_report failed SetupFailed @EXIT_NO_OUTPUT_DIR@ "NODE_RANK '$(fto_one_line "${NODE_RANK:-}")' is not a rank"
        exit @EXIT_NO_OUTPUT_DIR@ ;;
    esac
    if ! sed "s/@RANK_PATTERN@/$NODE_RANK/g" "$FTO_ENV_CONFIG_TEMPLATE" > "$FTO_ENV_CONFIG"; then
      fto_report failed SetupFailed @EXIT_NO_OUTPUT_DIR@ "cannot write this rank's env_config to $FTO_ENV_CONFIG"
      exit @EXIT_NO_OUTPUT_DIR@
    fi
  fi
  if [ -n "${FTO_MULTI_NODE_ENV_FILE:-}" ]; then
    # The rank's wiring, for a trainer that reads it from env_config's multi_node_env_path.
    if ! mkdir -p -- "$(dirname -- "$FTO_MULTI_NODE_ENV_FILE")" || ! printf \
      'MASTER_ADDR=%s\nMASTER_PORT=%s\nNODE_RANK=%s\nNNODES=%s\nNPROC_PER_NODE=%s\nWORLD_SIZE=%s\n' \
      "$MASTER_ADDR" "$MASTER_PORT" "$NODE_RANK" "$NNODES" "$NPROC_PER_NODE" "$WORLD_SIZE" \
      > "$FTO_MULTI_NODE_ENV_FILE"; then
      fto_report failed OutputDirUnavailable @EXIT_NO_OUTPUT_DIR@ "cannot write $FTO_MULTI_NODE_ENV_FILE"
      exit @EXIT_NO_OUTPUT_DIR@
    fi
  fi
}

fto_train() {  # sets verdict, reason, status and evidence from the trainer's exit status and its log
  tail -n +1 -F -- "$FTO_LOG_FILE" 2>/dev/null &
  tail_pid=$!
  fto_say "starting $trainer"
  # In the background, so that `wait` (unlike a foreground command) lets a trap run at once: a signal
  # is passed on to the trainer as SIGTERM (a background job has SIGINT ignored), whose end is judged.
  trainer_pid=""
  stop=no
  trap 'stop=yes; [ -z "$trainer_pid" ] || kill -TERM "$trainer_pid" 2>/dev/null' TERM INT HUP
  "$trainer" --env_config "$FTO_ENV_CONFIG" --exp_config "$FTO_EXP_CONFIG" &
  trainer_pid=$!
  if [ "$stop" = yes ]; then kill -TERM "$trainer_pid" 2>/dev/null; fi
  fto_wait_for "$trainer_pid"
  code=$waited
  fto_stages_end_at_a_signal
  if [ "$stop" = yes ]; then fto_say "stopped by a signal: $trainer was told to stop (SIGTERM)"; fi
  sleep "${FTO_LOG_DRAIN_SECONDS:-2}"
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
  fto_say "trainer verdict: $verdict ($reason)"
}

fto_postscript() {
  if [ -s "$FTO_POSTSCRIPT" ]; then
    fto_say "running the postscript"
    ( . "$FTO_POSTSCRIPT" )
    post=$?
    if [ "$post" -ne 0 ] && [ "$verdict" = succeeded ]; then
      verdict=failed; reason=PostscriptFailed; status=$post
      evidence="the postscript exited with status $post"
    fi
  fi
}

fto_push() {  # only a training judged succeeded, and only from rank 0
  if [ "$verdict" = succeeded ] && [ -n "${FTO_PUSH_FORMAT:-}" ]; then
    case "${NODE_RANK:-}" in
      ""|0)
        if ! fto_push_output; then
          fto_say "pushing the output failed; the trained output stays at $FTO_OUTPUT_DIR"
          verdict=failed; reason=@REASON_PUSH_FAILED@; status=@EXIT_PUSH_FAILED@
          evidence="training complete; push failed: $push_error"
        fi
        ;;
      *) fto_say "rank $NODE_RANK does not push: rank 0 pushes the output" ;;
    esac
  fi
}

fto_stages_end_at_a_signal() {  # but the trainer's, which is told to stop and then judged (fto_train)
  trap 'exit 143' TERM
  trap 'exit 130' INT
  trap 'exit 129' HUP
}

fto_run() {  # in a subshell: everything the prescript does to its shell stays in it
  trap - EXIT
  fto_stages_end_at_a_signal
  fto_enter Prescript
  if [ -s "$FTO_PRESCRIPT" ]; then
    fto_say "running the prescript"
    . "$FTO_PRESCRIPT"
  fi
  set +eu  # the prescript's options are its own: the steps below are written without them
  fto_stages_end_at_a_signal  # and so are its traps
  fto_settings
  fto_enter Setup
  fto_prepare
  fto_enter Trainer
  fto_train
  fto_enter Postscript
  fto_postscript
  fto_enter OutputPush
  fto_push
  fto_report "$verdict" "$reason" "$status" "$evidence"
  exit "$status"
}

# As a container's PID 1 the shell gets no signal it has no handler for: the kubelet's SIGTERM (a deleted
# pod, an eviction, a deadline) did nothing until SIGKILL. The judge passes a signal on to the run and
# still judges its end; a `kill $$` of a script (whose $$ is this shell) ends the run, never the judge.
run_pid=""
stopping=no
trap 'stopping=yes; [ -z "$run_pid" ] || kill -TERM "$run_pid" 2>/dev/null' HUP INT TERM
( fto_run ) &
run_pid=$!
if [ "$stopping" = yes ]; then kill -TERM "$run_pid" 2>/dev/null; fi
fto_wait_for "$run_pid"
fto_judge "$waited"
"""


def _filled(script: str, facts: dict[str, str]) -> str:
    """The script with the operator's own constants in place (never user text: that comes as data)."""
    for name, value in facts.items():
        script = script.replace(f"@{name}@", value)
    assert not re.search(r"@[A-Z_]+@", script), "an unfilled @NAME@ in the entrypoint"
    return script


ENTRYPOINT = _filled(
    _SCRIPT,
    {
        "TRAINER_COMMAND": TRAINER_COMMAND,
        "COMPLETE": COMPLETE_MARKER,
        "EXIT_INCOMPLETE": str(EXIT_INCOMPLETE),
        "EXIT_NO_OUTPUT_DIR": str(EXIT_NO_OUTPUT_DIR),
        "EXIT_PUSH_FAILED": str(EXIT_PUSH_FAILED),
        "EXIT_ENDED_EARLY": str(EXIT_ENDED_EARLY),
        "REASON_PUSH_FAILED": REASON_PUSH_FAILED,
        "FORMAT_IMAGE": PUSH_FORMAT_IMAGE,
        "FORMAT_MODELKIT": PUSH_FORMAT_MODELKIT,
        "FORMAT_MODELPACK": PUSH_FORMAT_MODELPACK,
        # A sed pattern of the placeholder that is no @NAME@ itself: [@]FTO_NODE_RANK[@].
        "RANK_PATTERN": f"[{RANK_PLACEHOLDER[0]}]{RANK_PLACEHOLDER[1:-1]}[{RANK_PLACEHOLDER[-1]}]",
    },
)
