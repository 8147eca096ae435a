"""``make demo`` (``python examples/demo.py``): the whole pipeline on the embedded endpoint, with the real CLIs as subprocesses.

1. start moto's server on 127.0.0.1 (a free port, dummy credentials for it only);
2. create the bucket, the queue and its dead-letter queue (``resources.create_all``);
3. ``sendjobs examples/data …`` uploads the files and sends one job each;
4. two ``getjobs`` workers run ``examples/textstats.py`` on every file while ``sendjobs --wait``
   follows the batch until every job is done or failed; then the workers are drained (SIGTERM);
5. ``jobctl status`` shows the batch; the outputs are downloaded to ``demo-output/``; the
   endpoint stops.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from filejobs import aws
from filejobs.ops import resources
from filejobs.local import local_endpoint

BUCKET = "filejobs-demo"
QUEUE = "filejobs-demo"
REGION = "us-east-1"


def repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pump(stream, prefix: str, sink) -> None:
    for raw in iter(stream.readline, b""):
        sink.write(prefix + raw.decode("utf-8", "replace"))
        sink.flush()


def run_demo(*, data_dir: str, output_dir: str, workers: int = 2, concurrency: int = 4,
             out=sys.stderr) -> int:
    root = repo_root()
    command = [sys.executable, os.path.join(root, "examples", "textstats.py")]
    started = time.monotonic()
    with local_endpoint() as url, tempfile.TemporaryDirectory(prefix="filejobs-demo-") as scratch:
        out.write(f"demo: local AWS endpoint (moto) at {url}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ENDPOINT_URL=url, AWS_REGION=REGION, PYTHONUNBUFFERED="1")
        clients = aws.make_clients(aws.Target(region=REGION, endpoint_url=url))
        created = resources.create_all(clients.s3, clients.sqs, bucket=BUCKET, queue=QUEUE, region=REGION,
                                       settings=resources.QueueSettings(visibility_timeout_s=30, max_receive_count=2))
        out.write(f"demo: created s3://{BUCKET}, queue {QUEUE} and its dead-letter queue (maxReceiveCount 2)\n")

        work = [sys.executable, "-m", "getjobs", "--concurrency", str(concurrency), "--retry-delay", "1",
                "--wait-time", "2", "--grace", "10", "--bucket", BUCKET, "--input-prefix", "input/",
                "--output-prefix", "output/"]
        procs, pumps = start_workers([work + [os.path.join(scratch, f"work-{i}"), ".json", QUEUE, REGION] + command
                                      for i in range(workers)], env=env, cwd=root, out=out)
        try:
            send = [sys.executable, "-m", "sendjobs", "--state-dir", os.path.join(scratch, "state"), "--json",
                    "--wait", "--wait-interval", "1", "--output-extension", ".json",
                    data_dir, BUCKET, "input/", "output/", QUEUE, REGION]
            out.write("demo: $ sendjobs " + " ".join(send[3:]) + "\n")
            sent = subprocess.run(send, env=env, cwd=root, stdout=subprocess.PIPE, timeout=600)
        finally:
            codes = stop_workers(procs, pumps)
        seconds = time.monotonic() - started
        # sendjobs --wait exits 1 when a job failed: expected here (one input is not text).
        if sent.returncode not in (0, 1) or not sent.stdout.strip():
            out.write(f"demo: sendjobs failed with exit code {sent.returncode}\n")
            return 1
        summary = json.loads(sent.stdout.splitlines()[0])
        batch_id = summary["batch_id"]

        outputs = _download(clients.s3, "output/", output_dir)
        out.write("\ndemo: $ jobctl status --ext .json " + BUCKET + "\n")
        status = subprocess.run([sys.executable, "-m", "filejobs.cli", "status", "--ext", ".json", BUCKET],
                                env=env, cwd=root, stderr=subprocess.PIPE, text=True)
        out.write(status.stderr)
        dlq = int(clients.sqs.get_queue_attributes(QueueUrl=created.dlq_url, AttributeNames=[
            "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
        failed = len(_errors(clients.s3, batch_id))
        out.write("\n")
        out.write(f"demo: {summary['files_sent']} jobs sent (batch {batch_id}), {len(outputs)} done, "
                  f"{failed} failed ({dlq} in the dead-letter queue), {seconds:.1f}s in all\n")
        out.write(f"demo: outputs downloaded to {output_dir}{os.sep} (e.g. {outputs[0] if outputs else '-'})\n")
        out.write("demo: the failed job is the unreadable 'broken/scanned page.txt' — on purpose, to show the "
                  "retry → dead-letter queue path\n")
        if any(codes):
            out.write(f"demo: a worker exited with {codes}\n")
            return 1
        if len(outputs) + failed != summary["files_sent"]:
            out.write("demo: some jobs are neither done nor failed\n")
            return 1
    return 0


def start_workers(argvs: list[list[str]], *, env: dict, cwd: str, out) -> tuple[list, list]:
    """Start one getjobs per argv in the background, their log lines prefixed on ``out``."""
    procs, pumps = [], []
    for i, argv in enumerate(argvs):
        if i == 0:
            out.write("demo: $ getjobs " + " ".join(argv[3:]) + f"   (x{len(argvs)}, in the background)\n")
        p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t = threading.Thread(target=_pump, args=(p.stderr, f"[worker {i + 1}] ", out), daemon=True)
        t.start()
        procs.append(p)
        pumps.append(t)
    return procs, pumps


def stop_workers(procs: list, pumps: list) -> list[int]:
    """Drain them (SIGTERM: running jobs finish) and return their exit codes."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    codes = [p.wait(timeout=60) for p in procs]
    for t in pumps:
        t.join(timeout=2)
    return codes


def demo_args(argv, *, prog: str, description: str, output: str):
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--data", default=os.path.join(repo_root(), "examples", "data"),
                        help="directory to process (default: examples/data)")
    parser.add_argument("--output", default=output, help="where the results are downloaded")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    return dict(data_dir=args.data, output_dir=os.path.abspath(args.output), workers=args.workers,
                concurrency=args.concurrency)


def _download(s3, prefix: str, target: str, *, bucket: str = BUCKET) -> list[str]:
    if os.path.isdir(target):
        shutil.rmtree(target)
    got = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix):]
            path = os.path.join(target, *rel.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3.download_file(bucket, obj["Key"], path)
            got.append(os.path.relpath(path))
    return sorted(got)


def _errors(s3, batch_id: str) -> list[dict]:
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"errors/{batch_id}/"):
        for obj in page.get("Contents", []):
            found.append(json.loads(s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()))
    return found


def main(argv=None) -> int:
    return run_demo(**demo_args(argv, prog="demo.py", output="demo-output", description="The whole pipeline on the "
                                "embedded endpoint: submit examples/data, run workers, show the results."))


if __name__ == "__main__":
    sys.exit(main())
