"""Finding which keys exist, on S3 and on stores that page differently (filejobs/ops/listing.py)."""

import hashlib

import pytest

from filejobs.aws import Target
from filejobs.ops import listing
from testing.fakes3 import InMemoryS3

# The 14 keys of the LocalStack probe (/work/scratch/localstack/scenarios/s3_list_probe.py).
PROBE = ["p/a.txt", "p/a b.txt", "p/a+b.txt", "p/a%20b.txt", "p/b.txt", "p/z.txt", "p/~tilde", "p/ä.txt", "p/über.txt",
         "p/datei-a.dat", "p/datei-ü-1.dat", "p/datei-ü-18.dat", "p/日本.txt", "p/Zebra.txt"]


def paged(s3, **args):
    keys, args = [], {"Prefix": "p/", **args}
    while True:
        page = s3.list_objects_v2(Bucket="b", **args)
        keys += [o["Key"] for o in page["Contents"]]
        if not page["IsTruncated"]:
            return keys
        args = {"Prefix": "p/", "ContinuationToken": page["NextContinuationToken"]}


@pytest.mark.parametrize("args, page_size, dropped", [
    ({"StartAfter": "p/a"}, 1000, {"p/ä.txt", "p/über.txt", "p/日本.txt"}),
    ({"StartAfter": "p/datei-a.dat"}, 1000, {"p/datei-ü-1.dat", "p/datei-ü-18.dat", "p/ä.txt", "p/über.txt", "p/日本.txt"}),
    ({}, 1, {"p/datei-ü-1.dat", "p/datei-ü-18.dat", "p/ä.txt", "p/über.txt", "p/日本.txt"}),
    ({}, 5, {"p/ä.txt", "p/über.txt", "p/日本.txt"}),
])
def test_the_fake_drops_what_localstack_dropped(args, page_size, dropped):
    got = paged(InMemoryS3(PROBE, page_size=page_size), **args)
    start = args.get("StartAfter", "").encode()
    assert {k for k in PROBE if k.encode() > start} - set(got) == dropped


def test_the_fake_returns_keys_before_a_non_ascii_start_key_as_localstack_did():
    assert len(paged(InMemoryS3(PROBE), StartAfter="p/ä")) == 14


def test_a_key_counts_as_an_object_or_as_a_directory_of_parts_and_nothing_else_counts():
    wanted = {"out/a.out", "out/d/b.out", "out/c.out"}
    listed = ["out/a.out", "out/d/b.out/part-0", "out/d/b.out/part-1", "out/c.outx", "out/other.out",
              "out/c.out.tmp/x"]
    assert listing.settled(wanted, listed) == {"out/a.out", "out/d/b.out"}


def test_only_s3_itself_is_trusted_to_continue_after_a_start_key():
    assert listing.trusts_start_after(Target())
    assert listing.trusts_start_after(Target(endpoint_url="https://s3.eu-west-1.amazonaws.com"))
    assert listing.trusts_start_after(Target(endpoint_url="https://bucket.vpce-1a2b.s3.us-east-1.vpce.amazonaws.com"))
    assert not listing.trusts_start_after(Target(endpoint_url="http://127.0.0.1:4566"))
    assert not listing.trusts_start_after(Target(endpoint_url="https://minio.example.com"))


def test_paging_from_a_start_key_misses_keys_on_localstack_and_plain_prefix_listings_do_not():
    outputs = ["p/" + k[2:] + ".out" for k in PROBE]
    done = outputs[::2]  # half the jobs have finished
    store = InMemoryS3(done, page_size=2)
    ranged = listing.settled(set(outputs), listing.find(store, "b", outputs, requests=listing.Requests(), ordered=True))
    assert ranged < set(done)  # the S3 way, on this store: finished jobs counted as pending
    store.requests.clear()
    found = listing.find(store, "b", outputs, requests=listing.Requests(), ordered=False)
    assert listing.settled(set(outputs), found) == set(done)
    assert all(set(r) == {"Prefix"} for r in store.requests), store.requests  # no StartAfter, no token


def numbered(n, fmt="out/f{:05d}.dat.out"):
    return [fmt.format(i) for i in range(n)]


def hashed(n):
    return [f"out/{hashlib.sha1(str(i).encode()).hexdigest()}.out" for i in range(n)]


@pytest.mark.parametrize("keys, percent_encoded, most", [
    (numbered(10_000), True, 11),  # one listing of out/f0, cut short; then out/f00 ... out/f09
    (hashed(10_000), True, 17),  # out/ cut short, then out/0 ... out/f (~625 each)
    (numbered(10_000), False, 11),
])
def test_plain_prefix_listings_cost_about_one_request_per_thousand_keys(keys, percent_encoded, most):
    store = InMemoryS3(keys, percent_encoded=percent_encoded)
    requests = listing.Requests()
    found = listing.find(store, "b", keys, requests=requests, ordered=False)
    assert listing.settled(set(keys), found) == set(keys)
    assert requests.n <= most


def test_on_s3_a_batch_costs_one_ranged_listing_per_thousand_keys():
    keys = numbered(10_000)
    store = InMemoryS3(keys + numbered(3_000, "out/a-other/{:05d}"), percent_encoded=False)
    requests = listing.Requests()
    found = listing.find(store, "b", keys, requests=requests, ordered=True)
    assert listing.settled(set(keys), found) == set(keys) and requests.n == 10


def test_other_outputs_under_the_same_prefix_are_not_listed():
    keys = numbered(100, "out/batch-2/{:03d}.out")
    store = InMemoryS3(keys[:50] + numbered(5_000, "out/batch-1/{:05d}.out") + numbered(5_000, "out/batch-3/{:05d}"))
    requests = listing.Requests()
    found = listing.find(store, "b", keys, requests=requests, ordered=False)
    assert listing.settled(set(keys), found) == set(keys[:50]) and requests.n == 1


def test_a_wanted_key_that_prefixes_more_than_a_page_of_keys_is_found_as_an_object_or_a_directory():
    as_object, as_dir, missing = "out/x.out", "out/y.out", "out/z.out"
    crowd = [k + f".{i:04d}" for k in (as_object, as_dir, missing) for i in range(5)]
    store = InMemoryS3([as_object, as_dir + "/part-1"] + crowd, page_size=3)
    found = listing.find(store, "b", [as_object, as_dir, missing], requests=listing.Requests(), ordered=False)
    assert listing.settled({as_object, as_dir, missing}, found) == {as_object, as_dir}


def test_a_full_listing_of_one_page_is_one_request_without_a_token_and_certain():
    store = InMemoryS3(PROBE)
    requests = listing.Requests()
    found, uncertain = listing.list_all(store, "b", "p/", requests=requests, ordered=False)
    assert set(found) == set(PROBE) and not uncertain
    assert requests.n == 1 and store.requests == [{"Prefix": "p/"}]


def test_a_full_listing_past_one_page_is_uncertain_except_on_s3():
    found, uncertain = listing.list_all(InMemoryS3(PROBE, page_size=2), "b", "p/", requests=listing.Requests(),
                                        ordered=False)
    assert uncertain and set(found) < set(PROBE)  # what LocalStack's tokens lost
    found, uncertain = listing.list_all(InMemoryS3(PROBE, page_size=2, percent_encoded=False), "b", "p/",
                                        requests=listing.Requests(), ordered=True)
    assert not uncertain and set(found) == set(PROBE)
