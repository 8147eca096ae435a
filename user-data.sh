#!/bin/bash
# filejobs worker bootstrap: EC2 user data for Amazon Linux 2023 (runs once, as root, at first boot).
#
# Installs Python 3 and a virtualenv with the filejobs artifact fetched from the bucket with the
# instance role (no keys, no presigned URL), then runs getjobs as the systemd service
# filejobs-worker (restarted on failure, logs in the journal: journalctl -u filejobs-worker).
#
# infra/stack.yaml carries this same script: it renders the CONFIGURATION block below from its
# parameters and keeps everything after the block byte for byte (tests/test_infra.py checks it).
# To use the script without the template, edit the block and pass the file as user data.
set -euo pipefail

# ---- BEGIN CONFIGURATION ----
BUCKET="my-filejobs-bucket"
QUEUE="https://sqs.eu-west-1.amazonaws.com/123456789012/filejobs-jobs"
REGION="eu-west-1"
INPUT_PREFIX="input/"
OUTPUT_PREFIX="output/"
ERRORS_PREFIX="errors/"
CODE_KEY="code/filejobs-1.0.0-py3-none-any.whl"
OUTPUT_EXTENSION=".out"
COMMAND="cp"
CONCURRENCY="0"
JOB_TIMEOUT="0"
GRACE_SECONDS="120"
PROTECT_INSTANCE="true"
# ---- END CONFIGURATION ----
# QUEUE is a queue URL or name. COMMAND is split on spaces (no shell quoting): ship a wrapper
# script for anything more complex. CONCURRENCY 0 = one job per vCPU. JOB_TIMEOUT 0 = no limit.
# GRACE_SECONDS: on stop, running jobs get this long to finish before their messages are released.

APP_DIR=/opt/filejobs
VENV_DIR="$APP_DIR/venv"
ENV_FILE=/etc/filejobs/worker.env
UNIT_FILE=/etc/systemd/system/filejobs-worker.service
STATE_DIR=/var/lib/filejobs
WORK_DIR="$STATE_DIR/work"
SERVICE_USER=filejobs

log() {
    echo "filejobs-bootstrap: $*" >&2
}

# retry N COMMAND...: the instance role's credentials and the network can take a moment at boot.
retry() {
    local attempts="$1" n=1
    shift
    until "$@"; do
        if [ "$n" -ge "$attempts" ]; then
            log "giving up after $n attempts: $*"
            return 1
        fi
        log "attempt $n failed, retrying: $*"
        sleep $((n * 5))
        n=$((n + 1))
    done
}

install_packages() {
    # Amazon Linux 2023 ships python3 (3.9) and the AWS CLI v2; pip and venv may be missing.
    if ! rpm -q python3 python3-pip >/dev/null 2>&1; then
        retry 5 dnf install -y python3 python3-pip
    fi
    if ! command -v aws >/dev/null 2>&1; then
        retry 5 dnf install -y awscli-2
    fi
}

install_app() {
    local tmp artifact
    tmp="$(mktemp -d)"
    # pip needs the artifact's own file name (name-version-tags.whl or name-version.tar.gz).
    artifact="$tmp/$(basename "$CODE_KEY")"
    log "downloading s3://$BUCKET/$CODE_KEY"
    retry 10 aws s3 cp --only-show-errors --region "$REGION" "s3://$BUCKET/$CODE_KEY" "$artifact"
    python3 -m venv "$VENV_DIR"
    # The artifact's dependencies (boto3, click) come from PyPI.
    retry 5 "$VENV_DIR/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check "$artifact"
    rm -rf "$tmp"
    "$VENV_DIR/bin/getjobs" --help >/dev/null
}

create_user() {
    if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir "$STATE_DIR" --shell /sbin/nologin "$SERVICE_USER"
    fi
}

# write_env_file PATH: the worker's settings. getjobs reads every option from GETJOBS_<OPTION>;
# the positional arguments come from FILEJOBS_* through the unit's ExecStart line.
write_env_file() {
    local path="$1" concurrency="$CONCURRENCY"
    if [ "$concurrency" = "0" ]; then
        concurrency="$(nproc)"
    fi
    mkdir -p "$(dirname "$path")"
    {
        echo "# filejobs worker settings, written by user data. Options: getjobs --help ('env var:')."
        echo "AWS_REGION=\"$REGION\""
        echo "AWS_DEFAULT_REGION=\"$REGION\""
        echo "HOME=\"$STATE_DIR\""
        echo "FILEJOBS_WORK_DIR=\"$WORK_DIR\""
        echo "FILEJOBS_OUTPUT_EXTENSION=\"$OUTPUT_EXTENSION\""
        echo "FILEJOBS_QUEUE=\"$QUEUE\""
        echo "FILEJOBS_COMMAND=\"$COMMAND\""
        echo "GETJOBS_CONCURRENCY=\"$concurrency\""
        echo "GETJOBS_BUCKET=\"$BUCKET\""
        echo "GETJOBS_INPUT_PREFIX=\"$INPUT_PREFIX\""
        echo "GETJOBS_OUTPUT_PREFIX=\"$OUTPUT_PREFIX\""
        echo "GETJOBS_ERRORS_PREFIX=\"$ERRORS_PREFIX\""
        if [ "$JOB_TIMEOUT" != "0" ]; then
            echo "GETJOBS_JOB_TIMEOUT=\"$JOB_TIMEOUT\""
        fi
        echo "GETJOBS_GRACE=\"$GRACE_SECONDS\""
        echo "GETJOBS_PROTECT_INSTANCE=\"$PROTECT_INSTANCE\""
        echo "GETJOBS_LOG_FORMAT=\"json\""
    } >"$path"
    chmod 0644 "$path"
}

# write_unit PATH: the systemd service.
write_unit() {
    local path="$1"
    mkdir -p "$(dirname "$path")"
    cat >"$path" <<'UNIT'
[Unit]
Description=filejobs worker (getjobs): runs one command per SQS job
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=filejobs
Group=filejobs
EnvironmentFile=/etc/filejobs/worker.env
StateDirectory=filejobs
WorkingDirectory=/var/lib/filejobs
ExecStart=/opt/filejobs/venv/bin/getjobs ${FILEJOBS_WORK_DIR} ${FILEJOBS_OUTPUT_EXTENSION} ${FILEJOBS_QUEUE} ${AWS_REGION} $FILEJOBS_COMMAND
# SIGTERM goes to getjobs only: it stops taking jobs and gives running commands the grace period;
# anything still running when TimeoutStopSec ends is killed (KillMode=mixed).
KillSignal=SIGTERM
KillMode=mixed
Restart=on-failure
RestartSec=10
StandardOutput=journal
StandardError=journal
SyslogIdentifier=filejobs-worker
NoNewPrivileges=yes
ProtectSystem=full
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
UMask=0077
UNIT
    {
        echo "TimeoutStopSec=$((GRACE_SECONDS + 60))"
        echo
        echo "[Install]"
        echo "WantedBy=multi-user.target"
    } >>"$path"
}

install_unit() {
    write_unit "$UNIT_FILE"
    systemctl daemon-reload
    systemctl enable --now filejobs-worker.service
}

main() {
    install_packages
    install_app
    create_user
    write_env_file "$ENV_FILE"
    install_unit
    log "filejobs-worker started for $QUEUE"
}

# Sourcing the file (tests) defines the functions without running anything.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
