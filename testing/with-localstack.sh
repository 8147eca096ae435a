#!/usr/bin/env bash
# with-localstack.sh: run a command against a throw-away LocalStack (free edition, no Docker).
#
#   testing/with-localstack.sh [--venv DIR] -- COMMAND [ARGS...]
#
# - Creates a Python 3.13 venv with localstack-core on first use (DIR, default
#   $LOCALSTACK_VENV or ~/.cache/filejobs/localstack-venv); needs pyenv's 3.13 or python3.13.
# - Enters a new private network namespace (LocalStack's gateway binds 0.0.0.0 whatever it is told,
#   so nothing outside this namespace can reach it, and it reaches nothing but itself).
# - Starts LocalStack there with its state under a temporary directory, waits for its health check,
#   runs COMMAND in the same namespace with AWS_ENDPOINT_URL=http://127.0.0.1:4566, AWS_REGION=us-east-1
#   and dummy credentials, and exits with COMMAND's status.
# - Always stops LocalStack (by PID, its own process group) and removes the temporary directory.
#
# The end-to-end tests against LocalStack (tests/e2e/conftest.py):
#   testing/with-localstack.sh -- sh -c 'FILEJOBS_TEST_ENDPOINT=$AWS_ENDPOINT_URL .venv/bin/python -m pytest tests/e2e'
#
# Environment: LOCALSTACK_VENV (default venv), LOCALSTACK_PYTHON (a python3.13 to build the venv with),
# LOCALSTACK_SERVICES (default below), LOCALSTACK_START_TIMEOUT (seconds, default 180),
# LOCALSTACK_LOG (copy LocalStack's log to this file when done).
# Needs: bash, unshare and ip (util-linux, iproute2), root or unprivileged user namespaces.

set -euo pipefail

readonly LS_VERSION="2026.3.0"
# Pins that localstack-core 2026.3.0 needs to start on Python 3.13 (see shared notes).
readonly LS_PACKAGES=("localstack-core[runtime]==${LS_VERSION}" "cbor2<6" "pyopenssl==25.1.0"
                      "cryptography>=45,<46" "service-identity")
readonly LS_PORT=4566
readonly DEFAULT_SERVICES="s3,sqs,sns,cloudformation,iam,sts,cloudwatch,ec2,logs,ssm,kms"

prog=$(basename "$0")
self=$(readlink -f "${BASH_SOURCE[0]}")

usage() {
    echo "usage: $prog [--venv DIR] -- COMMAND [ARGS...]" >&2
    exit 2
}

log() { echo "$prog: $*" >&2; }

now() { echo "${EPOCHREALTIME/,/.}"; }

elapsed() {  # elapsed START -> seconds with one decimal
    awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'
}

find_python313() {
    if [[ -n ${LOCALSTACK_PYTHON:-} ]]; then
        echo "$LOCALSTACK_PYTHON"
        return
    fi
    local root candidate found=""
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    for candidate in "$root"/versions/3.13*/bin/python3.13; do
        [[ -x $candidate ]] && found=$candidate
    done
    if [[ -z $found ]]; then
        found=$(command -v python3.13 || true)
    fi
    if [[ -z $found ]]; then
        log "no Python 3.13 found (pyenv install 3.13, or set LOCALSTACK_PYTHON)"
        exit 1
    fi
    echo "$found"
}

ensure_venv() {  # ensure_venv DIR: (re)create the venv unless its marker matches the pins
    local venv=$1 marker=$1/.with-localstack-ok want python started
    want=$(printf '%s\n' "${LS_PACKAGES[@]}")
    if [[ -f $marker && $(cat "$marker") == "$want" ]]; then
        return
    fi
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    flock 9  # another launcher may be building the same venv
    if [[ -f $marker && $(cat "$marker") == "$want" ]]; then
        exec 9>&-
        return
    fi
    if [[ -e $venv ]]; then
        if [[ ! -f $venv/pyvenv.cfg ]]; then
            log "$venv exists and is not a venv; not touching it"
            exit 1
        fi
        log "venv $venv is incomplete or has other pins: recreating it"
        rm -rf -- "$venv"
    fi
    python=$(find_python313)
    started=$(now)
    log "creating $venv with $python and localstack-core $LS_VERSION (takes a few minutes)"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${LS_PACKAGES[@]}"
    echo "$want" >"$marker"
    exec 9>&-
    log "venv ready in $(elapsed "$started") s"
}

# ---------------------------------------------------------------- inside the network namespace

ls_pid=""
ls_ready=""
cmd_pid=""
workdir=""

on_signal() {  # on_signal NAME STATUS: pass TERM/HUP on to COMMAND, or give up while starting
    if [[ -z $cmd_pid ]]; then
        exit "$2"
    fi
    # Ctrl-C already reached COMMAND (same process group); a second INT could cut its clean-up short.
    if [[ $1 != INT ]]; then
        kill "-$1" "$cmd_pid" 2>/dev/null || true
    fi
}

stop_localstack() {
    local status=$? started i grace
    trap - EXIT
    trap '' INT TERM HUP  # finish the clean-up whatever arrives now
    if [[ -n $ls_pid ]] && kill -0 "$ls_pid" 2>/dev/null; then
        started=$(now)
        # LocalStack was started with setsid: its PID is also its process group's ID.
        kill -TERM -- "-$ls_pid" 2>/dev/null || true
        # A LocalStack stopped half-way through its start-up does not finish shutting down: 3 s then.
        grace=$([[ -n $ls_ready ]] && echo 15 || echo 3)
        for ((i = 0; i < grace * 10; i++)); do
            kill -0 "$ls_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$ls_pid" 2>/dev/null; then
            log "LocalStack (pid $ls_pid) did not stop in $grace s: killing it"
            kill -KILL -- "-$ls_pid" 2>/dev/null || true
        fi
        wait "$ls_pid" 2>/dev/null || true
        log "LocalStack stopped in $(elapsed "$started") s"
    fi
    if [[ -n $workdir ]]; then
        if [[ -n ${LOCALSTACK_LOG:-} && -f $workdir/localstack.log ]]; then
            cp -- "$workdir/localstack.log" "$LOCALSTACK_LOG" || true
        fi
        rm -rf -- "$workdir"
    fi
    exit "$status"
}

inside() {  # inside VENV COMMAND...: runs as the first process of the new network namespace
    local venv=$1 started status=0 url="http://127.0.0.1:$LS_PORT"
    shift
    trap stop_localstack EXIT
    trap 'on_signal INT 130' INT
    trap 'on_signal TERM 143' TERM
    trap 'on_signal HUP 129' HUP
    ip link set lo up
    workdir=$(mktemp -d "${TMPDIR:-/tmp}/with-localstack.XXXXXX")
    mkdir -p "$workdir/fs" "$workdir/volume"

    started=$(now)
    env SERVICES="${LOCALSTACK_SERVICES:-$DEFAULT_SERVICES}" \
        GATEWAY_LISTEN="127.0.0.1:$LS_PORT" LOCALSTACK_HOST="127.0.0.1:$LS_PORT" \
        SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 DNS_ADDRESS=0 EAGER_SERVICE_LOADING=1 \
        FILESYSTEM_ROOT="$workdir/fs" LOCALSTACK_VOLUME_DIR="$workdir/volume" \
        XDG_CACHE_HOME="$venv/cache" \
        setsid "$venv/bin/python" -m localstack.runtime.main >"$workdir/localstack.log" 2>&1 </dev/null &
    ls_pid=$!

    local deadline=$((SECONDS + ${LOCALSTACK_START_TIMEOUT:-180}))
    until "$venv/bin/python" - "$url/_localstack/health" <<'EOF' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
    do
        if ! kill -0 "$ls_pid" 2>/dev/null; then
            log "LocalStack exited during start-up; end of its log:"
            tail -n 40 "$workdir/localstack.log" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "LocalStack not healthy after ${LOCALSTACK_START_TIMEOUT:-180} s; end of its log:"
            tail -n 40 "$workdir/localstack.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    log "LocalStack $LS_VERSION ready at $url in $(elapsed "$started") s (pid $ls_pid)"
    ls_ready=1

    # In the background (stdin kept) so that a TERM to this script reaches COMMAND at once; bash would
    # hold the trap until a foreground COMMAND ended. LocalStack stops only after COMMAND has ended.
    # Bash starts background commands with SIGINT and SIGQUIT ignored (no job control here), and
    # programs inherit that (Python then never raises KeyboardInterrupt): restore both first.
    local restore_signals
    if env --default-signal=INT true 2>/dev/null; then
        restore_signals=(env "--default-signal=INT,QUIT")
    else  # coreutils < 9
        restore_signals=("$venv/bin/python" -c 'import os, signal, sys
for s in (signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores the last two
    signal.signal(s, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])')
    fi
    "${restore_signals[@]}" env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN -u AWS_SECURITY_TOKEN \
        AWS_ENDPOINT_URL="$url" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test LOCALSTACK_ENDPOINT="$url" \
        "$@" 0<&0 &
    cmd_pid=$!
    while :; do
        status=0
        wait "$cmd_pid" || status=$?
        # A status above 128 with COMMAND still alive means a trapped signal interrupted the wait.
        if ((status > 128)) && kill -0 "$cmd_pid" 2>/dev/null; then
            continue
        fi
        break
    done
    exit "$status"
}

# ---------------------------------------------------------------- entry

if [[ ${1:-} == "--inside-netns" ]]; then
    shift
    inside "$@"
fi

venv=${LOCALSTACK_VENV:-$HOME/.cache/filejobs/localstack-venv}
while (($#)); do
    case $1 in
        --venv)
            (($# >= 2)) || usage
            venv=$2
            shift 2
            ;;
        --venv=*)
            venv=${1#--venv=}
            shift
            ;;
        --)
            shift
            break
            ;;
        -h | --help) usage ;;
        *) usage ;;
    esac
done
(($#)) || usage
venv=$(readlink -m "$venv")

for tool in unshare ip setsid flock; do
    command -v "$tool" >/dev/null || { log "needs $tool"; exit 1; }
done
ensure_venv "$venv"

unshare_opts=(--net)
if ((EUID != 0)); then
    unshare_opts+=(--map-root-user)
fi
exec unshare "${unshare_opts[@]}" -- "$BASH" "$self" --inside-netns "$venv" "$@"
