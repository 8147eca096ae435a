"""An upload process's S3 client signs with the credentials its parent relays, and switches to
refreshed ones atomically; and the default number of upload processes per machine."""

from filejobs import aws
from filejobs.send.procs import default_processes
from filejobs.send.upload import Target
from filejobs.send.uploader import Init, relayed_clients
from filejobs.transfer import TransferConfig
from testing.helpers import REGION, unique


def signed_with(s3, bucket):
    seen = []
    s3.meta.events.register("before-send.s3", lambda request, **_: seen.append(request.headers["Authorization"]))
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    return seen[-1].decode().split("Credential=")[1].split("/")[0]


def test_the_client_signs_with_the_parents_credentials_and_their_refresh(mocked):
    bucket = unique("b")
    mocked.s3.create_bucket(Bucket=bucket)
    init = Init(aws_target=aws.Target(region=REGION), region=REGION,
                credentials=("AKIDPARENT", "secret", None, None),
                target=Target(bucket=bucket, input_prefix="in/", transfer=TransferConfig()), threads=2)
    s3, credentials = relayed_clients(init)
    assert signed_with(s3, bucket) == "AKIDPARENT"  # not the environment's keys
    credentials.update(("AKIDREFRESHED", "secret2", "token", None))
    assert signed_with(s3, bucket) == "AKIDREFRESHED"


def test_upload_processes_are_used_only_beyond_two_cores_and_at_most_four():
    assert [default_processes(n) for n in (None, 1, 2, 3, 4, 6, 8, 16, 64)] == [1, 1, 1, 1, 2, 3, 4, 4, 4]
