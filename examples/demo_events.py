"""``make demo-events`` (``python examples/demo_events.py``): files that arrive on their own, on the
embedded endpoint. No sendjobs: S3 itself sends a job for every object created under ``input/``.

1. start moto's server on 127.0.0.1 (a free port, dummy credentials for it only);
2. ``jobctl create BUCKET QUEUE --watch input/``: bucket, queue, dead-letter queue, and the bucket
   notification (ObjectCreated under input/ -> the queue) with a queue policy for this bucket only;
3. two ``getjobs --s3-events`` workers run a command *template*,
   ``python textstats.py {input} {output}``;
4. the files of examples/data are uploaded with plain boto3, one by one, as another system would
   (plus a zero-byte "folder" marker, which the workers skip);
5. ``jobctl status BUCKET --prefix input/ --output-prefix output/ --wait`` follows every file under
   the prefix (no batch) until each is done or failed; the workers are drained (SIGTERM), the
   outputs downloaded to ``demo-events-output/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from demo import REGION, _download, demo_args, repo_root, start_workers, stop_workers

from filejobs import aws
from filejobs.local import local_endpoint

BUCKET = "filejobs-events-demo"
QUEUE = "filejobs-events-demo"


def run_demo(*, data_dir: str, output_dir: str, workers: int = 2, concurrency: int = 4, out=sys.stderr) -> int:
    root = repo_root()
    template = [sys.executable, os.path.join(root, "examples", "textstats.py"), "{input}", "{output}"]
    started = time.monotonic()
    with local_endpoint() as url, tempfile.TemporaryDirectory(prefix="filejobs-demo-") as scratch:
        out.write(f"demo: local AWS endpoint (moto) at {url}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ENDPOINT_URL=url, AWS_REGION=REGION, PYTHONUNBUFFERED="1")
        create = [sys.executable, "-m", "filejobs.cli", "create", "--max-receive-count", "2", "--watch", "input/",
                  BUCKET, QUEUE]
        out.write("demo: $ jobctl " + " ".join(create[3:]) + "\n")
        made = subprocess.run(create, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        out.write(made.stderr)
        if made.returncode:
            return 1
        work = [sys.executable, "-m", "getjobs", "--s3-events", "--bucket", BUCKET, "--input-prefix", "input/",
                "--output-prefix", "output/", "--concurrency", str(concurrency), "--retry-delay", "1",
                "--wait-time", "2", "--grace", "10"]
        procs, pumps = start_workers([work + [os.path.join(scratch, f"work-{i}"), ".json", QUEUE, REGION] + template
                                      for i in range(workers)], env=env, cwd=root, out=out)
        clients = aws.make_clients(aws.Target(region=REGION, endpoint_url=url))
        try:
            uploaded = _arrive(clients.s3, data_dir, out)
            status = [sys.executable, "-m", "filejobs.cli", "status", "--prefix", "input/", "--output-prefix",
                      "output/", "--ext", ".json", "--queue", QUEUE, "--wait", "--interval", "1", "--timeout", "300",
                      BUCKET]
            out.write("\ndemo: $ jobctl " + " ".join(status[3:]) + "\n")
            waited = subprocess.run(status, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
            out.write(waited.stderr)
        finally:
            codes = stop_workers(procs, pumps)
        outputs = _download(clients.s3, "output/", output_dir, bucket=BUCKET)
        dlq_url = clients.sqs.get_queue_url(QueueName=QUEUE + "-dlq")["QueueUrl"]
        dlq = int(clients.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=[
            "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
        out.write(f"\ndemo: {uploaded} files uploaded with plain boto3 (no sendjobs), {len(outputs)} done, "
                  f"{dlq} in the dead-letter queue, {time.monotonic() - started:.1f}s in all\n")
        out.write(f"demo: outputs downloaded to {output_dir}{os.sep} (e.g. {outputs[0] if outputs else '-'})\n")
        # jobctl status --wait exits 1 when a job failed: expected (one input is not text, on purpose).
        if waited.returncode not in (0, 1) or any(codes) or len(outputs) + dlq != uploaded:
            out.write(f"demo: something went wrong (status exit {waited.returncode}, workers {codes})\n")
            return 1
    return 0


def _arrive(s3, data_dir: str, out) -> int:
    """Upload every file under ``data_dir`` to input/ as another system would: one PUT each, no job
    message. Returns how many files (the folder marker is not one)."""
    s3.put_object(Bucket=BUCKET, Key="input/incoming/", Body=b"")  # a console "folder": skipped
    count = 0
    for folder, _, files in os.walk(data_dir):
        for name in sorted(files):
            path = os.path.join(folder, name)
            key = "input/" + os.path.relpath(path, data_dir).replace(os.sep, "/")
            s3.upload_file(path, BUCKET, key)
            count += 1
    out.write(f"demo: uploaded {count} files to s3://{BUCKET}/input/ with boto3's upload_file\n")
    return count


def main(argv=None) -> int:
    return run_demo(**demo_args(argv, prog="demo_events.py", output="demo-events-output", description="S3 event "
                                "notifications on the embedded endpoint: upload files, watch the workers process them."))


if __name__ == "__main__":
    sys.exit(main())
