#!/bin/bash
# filejobs worker bootstrap: EC2 user data for Amazon Linux 2023 (runs once, as root, at first boot).
#
# Installs a current Python and the OS packages the command needs from the AL2023 repositories, and
# filejobs from a pinned wheelhouse in the bucket (fetched with the instance role; pip never asks a
# package index), then runs getjobs as the systemd service filejobs-worker. Its event log and
# embedded metrics go to /var/log/filejobs/ and, through the CloudWatch agent, to LOG_GROUP.
# Any boot error marks the instance Unhealthy (the group replaces it) and counts a BootFailures
# metric that raises an alarm.
#
# filejobs/infra/stack.yaml carries this same script: it renders the CONFIGURATION block below from
# its parameters and keeps everything else byte for byte (tests/infra/test_user_data.py checks it).
# To use the script without the template, edit the block and pass the file as user data.
set -Eeuo pipefail

# ---- BEGIN CONFIGURATION ----
BUCKET="my-filejobs-bucket"
QUEUE="https://sqs.eu-west-1.amazonaws.com/123456789012/filejobs-jobs"
REGION="eu-west-1"
INPUT_PREFIX="input/"
OUTPUT_PREFIX="output/"
ERRORS_PREFIX="errors/"
CODE_KEY="code/filejobs-1.1.0-wheelhouse.tar.gz"
SETUP_SCRIPT_KEY=""
PACKAGES=""
OUTPUT_EXTENSION=".out"
COMMAND="cp"
SLOTS="2"
JOB_TIMEOUT="3600"
GRACE_SECONDS="120"
GROUP="filejobs-workers"
LIFECYCLE_HOOK="filejobs-drain"
LOG_GROUP="/filejobs/filejobs"
S3_EVENTS="false"
# ---- END CONFIGURATION ----
# QUEUE is the queue's URL. COMMAND is split on spaces (no shell quoting); it may name placeholders
# (e.g. "pandoc {input} -o {output}", see getjobs --help). PACKAGES: dnf package names, space-separated.
# SETUP_SCRIPT_KEY: optional script under code/ in the bucket, run as root before the worker starts.
# SLOTS: jobs per instance at once. JOB_TIMEOUT 0 = no limit. GRACE_SECONDS: on stop, running jobs get
# this long to finish before their messages are released. GROUP/LIFECYCLE_HOOK: the Auto Scaling group
# and its termination hook (empty: not in a group). LOG_GROUP empty: logs stay on the instance.
# S3_EVENTS "true": the bucket sends S3 event notifications to the queue; the worker takes them as jobs.

PYTHON=python3.12
METRICS_NAMESPACE=filejobs
IMDS=http://169.254.169.254
APP_DIR=/opt/filejobs
VENV_DIR="$APP_DIR/venv"
ENV_FILE=/etc/filejobs/worker.env
UNIT_FILE=/etc/systemd/system/filejobs-worker.service
LOG_DIR=/var/log/filejobs
LOGROTATE_FILE=/etc/logrotate.d/filejobs
AGENT_CONFIG=/opt/aws/amazon-cloudwatch-agent/etc/filejobs.json
STATE_DIR=/var/lib/filejobs
WORK_DIR="$STATE_DIR/work"
SERVICE_USER=filejobs
INSTANCE_ID=""

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

# metadata PATH: instance metadata through IMDSv2 (a session token first; IMDSv1 is disabled).
metadata() {
    local token
    token="$(curl -sS --fail --max-time 5 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" \
        "$IMDS/latest/api/token")"
    curl -sS --fail --max-time 5 -H "X-aws-ec2-metadata-token: $token" "$IMDS/latest/meta-data/$1"
}

# boot_failed LINE: an instance without a worker must not stay InService (visible jobs would keep the
# group up for nothing): count the failure, then ask the group to replace the instance. The grace
# period is ignored on purpose, a boot failure happens inside it.
# https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_SetInstanceHealth.html
boot_failed() {
    local status=$? line="$1"
    if [ "$BASH_SUBSHELL" -gt 0 ]; then
        exit "$status"  # a failure inside $(...): the main shell reports it, once
    fi
    trap - ERR
    log "boot failed (exit $status, line $line)"
    aws cloudwatch put-metric-data --region "$REGION" --namespace "$METRICS_NAMESPACE" \
        --metric-name BootFailures --dimensions "AutoScalingGroupName=$GROUP" --value 1 --unit Count ||
        log "could not publish the BootFailures metric"
    if [ -n "$GROUP" ] && [ -n "$INSTANCE_ID" ]; then
        aws autoscaling set-instance-health --region "$REGION" --instance-id "$INSTANCE_ID" \
            --health-status Unhealthy --no-should-respect-grace-period ||
            log "could not mark $INSTANCE_ID unhealthy"
    fi
    exit "$status"
}

install_packages() {
    local -a extra=()
    read -r -a extra <<<"$PACKAGES"
    # AL2023's own python3 is 3.9 (end of life): the worker runs on $PYTHON from the same repositories.
    retry 5 dnf install -y "$PYTHON" "$PYTHON-pip" amazon-cloudwatch-agent "${extra[@]}"
    if ! command -v aws >/dev/null 2>&1; then
        retry 5 dnf install -y awscli-2
    fi
}

install_app() {
    local tmp
    tmp="$(mktemp -d)"
    log "downloading s3://$BUCKET/$CODE_KEY"
    retry 10 aws s3 cp --only-show-errors --region "$REGION" "s3://$BUCKET/$CODE_KEY" "$tmp/wheelhouse.tar.gz"
    tar -xzf "$tmp/wheelhouse.tar.gz" -C "$tmp"
    "$PYTHON" -m venv "$VENV_DIR"
    # Every wheel comes from the wheelhouse, checked against its pinned hash; no index is ever asked
    # (--isolated: no pip configuration or PIP_* variable can add one).
    "$VENV_DIR/bin/python" -m pip install --isolated --no-index --find-links "$tmp/wheelhouse" \
        --require-hashes --no-cache-dir --disable-pip-version-check --quiet -r "$tmp/wheelhouse/requirements.txt"
    rm -rf "$tmp"
    "$VENV_DIR/bin/getjobs" --help >/dev/null
}

run_setup_script() {
    local script
    if [ -z "$SETUP_SCRIPT_KEY" ]; then
        return 0
    fi
    script="$(mktemp)"
    log "running s3://$BUCKET/$SETUP_SCRIPT_KEY"
    retry 10 aws s3 cp --only-show-errors --region "$REGION" "s3://$BUCKET/$SETUP_SCRIPT_KEY" "$script"
    chmod 0700 "$script"
    "$script"
    rm -f "$script"
}

create_user() {
    if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir "$STATE_DIR" --shell /sbin/nologin "$SERVICE_USER"
    fi
}

# write_env_file PATH: the worker's settings. getjobs reads every option from GETJOBS_<OPTION>;
# the positional arguments come from FILEJOBS_* through the unit's ExecStart line.
write_env_file() {
    local path="$1"
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
        echo "GETJOBS_CONCURRENCY=\"$SLOTS\""
        echo "GETJOBS_BUCKET=\"$BUCKET\""
        echo "GETJOBS_INPUT_PREFIX=\"$INPUT_PREFIX\""
        echo "GETJOBS_OUTPUT_PREFIX=\"$OUTPUT_PREFIX\""
        echo "GETJOBS_ERRORS_PREFIX=\"$ERRORS_PREFIX\""
        if [ "$JOB_TIMEOUT" != "0" ]; then
            echo "GETJOBS_JOB_TIMEOUT=\"$JOB_TIMEOUT\""
        fi
        echo "GETJOBS_GRACE=\"$GRACE_SECONDS\""
        if [ "$S3_EVENTS" = "true" ]; then
            echo "GETJOBS_S3_EVENTS=\"true\""
        fi
        if [ -n "$GROUP" ]; then
            echo "GETJOBS_PROTECT_INSTANCE=\"true\""
            echo "GETJOBS_AUTOSCALING_GROUP=\"$GROUP\""
            echo "GETJOBS_LIFECYCLE_HOOK=\"$LIFECYCLE_HOOK\""
            echo "GETJOBS_WATCH_NOTICES=\"true\""
        fi
        echo "GETJOBS_LOG_FORMAT=\"json\""
        echo "GETJOBS_METRICS=\"true\""
    } >"$path"
    chmod 0644 "$path"
}

# write_unit PATH: the systemd service. Events (stderr) and embedded metrics (stdout) go to files the
# CloudWatch agent ships; systemd opens them as root before dropping to the service user.
write_unit() {
    local path="$1"
    mkdir -p "$(dirname "$path")"
    {
        echo "[Unit]"
        echo "Description=filejobs worker (getjobs): runs one command per SQS job"
        echo "Wants=network-online.target"
        echo "After=network-online.target"
        echo
        echo "[Service]"
        echo "Type=simple"
        echo "User=$SERVICE_USER"
        echo "Group=$SERVICE_USER"
        echo "EnvironmentFile=$ENV_FILE"
        echo "StateDirectory=filejobs"
        echo "WorkingDirectory=$STATE_DIR"
        echo "ExecStart=$VENV_DIR/bin/getjobs \${FILEJOBS_WORK_DIR} \${FILEJOBS_OUTPUT_EXTENSION} \${FILEJOBS_QUEUE} \${AWS_REGION} \$FILEJOBS_COMMAND"
        echo "# SIGTERM goes to getjobs only: it stops taking jobs and gives running commands the grace"
        echo "# period; anything still running when TimeoutStopSec ends is killed (KillMode=mixed)."
        echo "KillSignal=SIGTERM"
        echo "KillMode=mixed"
        echo "TimeoutStopSec=$((GRACE_SECONDS + 60))"
        echo "Restart=on-failure"
        echo "# Exit 2 is a configuration getjobs refused at start-up: restarting cannot fix it."
        echo "RestartPreventExitStatus=2"
        echo "RestartSec=10"
        echo "StandardOutput=append:$LOG_DIR/metrics.log"
        echo "StandardError=append:$LOG_DIR/worker.log"
        echo "SyslogIdentifier=filejobs-worker"
        echo "NoNewPrivileges=yes"
        echo "ProtectSystem=full"
        echo "ProtectHome=yes"
        echo "PrivateTmp=yes"
        echo "ProtectKernelTunables=yes"
        echo "ProtectKernelModules=yes"
        echo "ProtectControlGroups=yes"
        echo "RestrictSUIDSGID=yes"
        echo "LockPersonality=yes"
        echo "UMask=0077"
        echo
        echo "[Install]"
        echo "WantedBy=multi-user.target"
    } >"$path"
}

# write_agent_config PATH: the CloudWatch agent ships both files; CloudWatch Logs turns the embedded
# metric lines into metrics. https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch-Agent-Configuration-File-Details.html
write_agent_config() {
    local path="$1" stream
    mkdir -p "$(dirname "$path")"
    stream='{instance_id}'
    cat >"$path" <<EOF
{"logs": {"logs_collected": {"files": {"collect_list": [
  {"file_path": "$LOG_DIR/worker.log", "log_group_name": "$LOG_GROUP", "log_stream_name": "$stream/events"},
  {"file_path": "$LOG_DIR/metrics.log", "log_group_name": "$LOG_GROUP", "log_stream_name": "$stream/metrics"}
]}}}}
EOF
}

configure_logs() {
    mkdir -p "$LOG_DIR" "$(dirname "$LOGROTATE_FILE")"
    chmod 0755 "$LOG_DIR"
    printf '%s/*.log {\n    size 100M\n    rotate 2\n    copytruncate\n    missingok\n}\n' "$LOG_DIR" >"$LOGROTATE_FILE"
    if [ -n "$LOG_GROUP" ]; then
        write_agent_config "$AGENT_CONFIG"
        amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c "file:$AGENT_CONFIG"
    fi
}

install_unit() {
    write_unit "$UNIT_FILE"
    systemctl daemon-reload
    systemctl enable --now filejobs-worker.service
}

main() {
    trap 'boot_failed $LINENO' ERR
    case "$QUEUE" in
        *://*) ;;
        *) log "QUEUE must be the queue's URL, not its name: $QUEUE"; false ;;
    esac
    INSTANCE_ID="$(retry 5 metadata instance-id)"
    install_packages
    install_app
    run_setup_script
    create_user
    write_env_file "$ENV_FILE"
    configure_logs
    install_unit
    log "filejobs-worker started on $INSTANCE_ID for $QUEUE"
}

# Sourcing the file (tests) defines the functions without running anything.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
