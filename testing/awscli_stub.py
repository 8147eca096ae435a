"""A stand-in for the AWS CLI in the user-data boot test: the three commands user-data.sh runs, done
with boto3 against ``AWS_ENDPOINT_URL`` (the moto server), each recorded as one line in the file
``AWSCLI_STUB_LOG``. Anything else fails, so the test notices a command the script gained.

    aws s3 cp [--only-show-errors] [--region R] s3://BUCKET/KEY DEST
    aws cloudwatch put-metric-data --region R --namespace N --metric-name M --dimensions K=V --value X --unit U
    aws autoscaling set-instance-health --region R --instance-id I --health-status S --no-should-respect-grace-period
"""

from __future__ import annotations

import os
import shlex
import sys

import boto3


_FLAGS = {"only-show-errors", "no-should-respect-grace-period"}


def _split(args: list[str]) -> tuple[list[str], dict[str, str | bool]]:
    """(positional arguments, {option: value or True})."""
    positional, opts, i = [], {}, 0
    while i < len(args):
        if not args[i].startswith("--"):
            positional.append(args[i])
            i += 1
        elif args[i][2:] in _FLAGS:
            opts[args[i][2:]] = True
            i += 1
        else:
            opts[args[i][2:]] = args[i + 1]
            i += 2
    return positional, opts


def main(argv: list[str]) -> int:
    with open(os.environ["AWSCLI_STUB_LOG"], "a", encoding="utf-8") as fh:
        fh.write("aws " + shlex.join(argv) + "\n")
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    service, command = argv[0], argv[1]
    positional, opts = _split(argv[2:])
    client = boto3.client(service, endpoint_url=endpoint,
                          region_name=str(opts.get("region") or os.environ.get("AWS_REGION", "us-east-1")))
    try:
        if (service, command) == ("s3", "cp"):
            bucket, key = positional[0][len("s3://"):].split("/", 1)
            client.download_file(bucket, key, positional[1])
        elif (service, command) == ("cloudwatch", "put-metric-data"):
            name, value = str(opts["dimensions"]).split("=", 1)
            client.put_metric_data(Namespace=opts["namespace"], MetricData=[{
                "MetricName": opts["metric-name"], "Value": float(opts["value"]), "Unit": opts["unit"],
                "Dimensions": [{"Name": name, "Value": value}]}])
        elif (service, command) == ("autoscaling", "set-instance-health"):
            client.set_instance_health(InstanceId=opts["instance-id"], HealthStatus=opts["health-status"],
                                       ShouldRespectGracePeriod="no-should-respect-grace-period" not in opts)
        else:
            print(f"aws stub: {service} {command} is not a command user-data.sh is expected to run", file=sys.stderr)
            return 252
    except Exception as exc:  # noqa: BLE001 - the CLI prints one line and exits 1
        print(f"aws stub: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
