"""`jobctl simulate`: golden scenarios (their output checked by hand once and kept under golden/), the
figures that were checked by hand, and properties that hold for any workload: more jobs never drain
sooner, no busy instance is ever terminated, no job is lost, every line fits 80 columns.

Regenerate the golden files after a deliberate change with FILEJOBS_REGOLDEN=1, then read the diff.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random

import pytest

from filejobs import cli
from filejobs.ops import replay, scaling, simulate
from filejobs.ops.stackparams import param_specs
from filejobs.ops.template import load_template
from testing.helpers import cli_runner

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "golden")
GOLDEN = {
    "burst": ["--jobs", "1000", "--job-seconds", "60", "--max-size", "50", "--instance-price", "0.04"],
    "steady": ["--jobs", "2000", "--job-seconds", "30", "--rate", "200/min", "--max-size", "50"],
    "straggler": ["--jobs", "1000", "--job-seconds", "60", "--straggler", "3600", "--max-size", "50"],
    "spot": ["--jobs", "400", "--job-seconds", "60..300", "--max-size", "20", "--spot-notice", "10:6",
             "--spot-notice", "15:6", "--seed", "7"],
}
# Checked by hand (seconds; the minute-by-minute series with --csv). Every scenario: the datapoint of
# minute 0 reaches the backlog alarm as minute 1 ends (metrics one minute late), so instances are asked
# for at 120 s and poll 120 s later (boot). Burst: the first step (+64) is capped at MaxSize 50; 1,000
# jobs of 60 s on 50 x 2 slots are 10 rounds from 240 s, the last ends at 840 s; the surplus alarm
# sees 5 quiet minutes (14-18) at 1,200 s and removes 32, then the 18 left (it reads the desired
# capacity a minute late): 50 x 18 min + 18 x 1 min + the drains' seconds = 920.1 instance-minutes.
# Steady: 200 jobs/min arrive, 16, 32, 48, then 50 instances work 200 jobs/min (100 slots x 30 s),
# so about 1,017 wait when the last job is sent at 600 s; 1,117 jobs at 200/min take 5.6 min more:
# the last job ends at 930 s. Straggler: the 3,600 s job starts first, at 240 s, and ends at 3,840 s;
# only its instance stays up meanwhile (964.5 instance-minutes, as tests/infra/test_scaling.py has it).
# Spot: 6 + 6 notices on an all-Spot group of 20: 12 interruptions, 6 replacements launched at each
# (26 instances while the 6 drain for their two minutes); jobs longer than the notice are released.
FIGURES = {
    "burst": {"first_instance_s": 120, "first_job_s": 240, "drained_s": 840, "peak_instances": 50},
    "steady": {"first_instance_s": 120, "first_job_s": 240, "drained_s": 930, "peak_instances": 50},
    "straggler": {"first_instance_s": 120, "first_job_s": 240, "drained_s": 3840, "peak_instances": 50},
    "spot": {"first_instance_s": 120, "first_job_s": 240, "interruptions": 12, "jobs_lost": 0, "jobs_cut": 0},
}


def jobctl(*args):
    return cli_runner().invoke(cli.cli, ["simulate", *map(str, args)], prog_name="jobctl")


@pytest.fixture(scope="module")
def template():
    return load_template()


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_scenario(name):
    result = jobctl(*GOLDEN[name])
    assert result.exit_code == 0, result.stderr
    path = os.path.join(GOLDEN_DIR, f"simulate_{name}.txt")
    if os.environ.get("FILEJOBS_REGOLDEN"):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(result.stdout)
    with open(path, encoding="utf-8") as fh:
        assert result.stdout == fh.read()
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_figures_checked_by_hand(name):
    out = json.loads(jobctl(*GOLDEN[name], "--json").stdout)
    result = out["result"]
    for key, value in FIGURES[name].items():
        assert result[key] == pytest.approx(value, abs=1), (key, result)
    assert (result["busy_terminated"], result["jobs_lost"]) == (0, 0)
    assert out["settings"]["MaxSize"] == GOLDEN[name][GOLDEN[name].index("--max-size") + 1]


def test_the_spot_scenario_replaces_interrupted_instances_and_releases_long_jobs():
    result = json.loads(jobctl(*GOLDEN["spot"], "--json").stdout)["result"]
    # Jobs of up to 300 s cannot all finish inside a two-minute notice: those are released, run elsewhere.
    assert result["jobs_released"] > 0 and result["jobs_done"] == 400
    assert result["peak_instances"] > 20  # replacements start while the interrupted ones drain


def test_the_requests_cost_matches_the_figure_setup_md_quotes():
    """setup.md: about $10.50 per million jobs in requests (sendjobs 1.1 + getjobs 2.2 per job)."""
    million = simulate.Result(jobs=1_000_000)
    assert simulate.cost(million, None)["requests_usd"] == pytest.approx(10.52, abs=0.01)
    assert simulate.cost(million, None)["s3_puts"] == 2_000_000


# --------------------------------------------------------------------------- properties


SETTINGS = [
    ({"MaxSize": 10}, "45", None, 0),
    ({"MaxSize": 20, "SlotsPerInstance": 4}, "20..90", 100.0, 3),
    ({"MaxSize": 8, "QuietMinutes": 2, "MessagesPerInstance": 3}, "10..400", None, 5),
]


@pytest.mark.parametrize("parameters,seconds,rate,seed", SETTINGS)
def test_more_jobs_never_drain_sooner(parameters, seconds, rate, seed):
    drained = []
    for jobs in (20, 60, 150, 400, 900):
        durations = simulate.durations(seconds, jobs, seed=seed)
        report = simulate.run(simulate.Scenario(tuple(durations), seconds, rate_per_min=rate, parameters=parameters,
                                                seed=seed))
        drained.append(report.result.drained_s)
    assert drained == sorted(drained), drained


def random_scenario(seed: int) -> simulate.Scenario:
    rng = random.Random(seed)
    low = rng.choice([5, 30, 60])
    high = low + rng.choice([0, 60, 600])
    parameters = {"MaxSize": rng.choice([1, 3, 10, 40]), "SlotsPerInstance": rng.choice([1, 2, 8]),
                  "QuietMinutes": rng.choice([1, 3, 5]), "MessagesPerInstance": rng.choice([1, 10, 50]),
                  "GraceSeconds": rng.choice(["30", "120", "600"]),
                  "OnDemandBaseCapacity": rng.choice([0, 0, 1])}
    jobs = rng.choice([1, 7, 80, 300])
    return simulate.Scenario(tuple(simulate.durations(f"{low}..{high}", jobs, seed=seed)), f"{low}..{high}",
                             rate_per_min=rng.choice([None, 5.0, 60.0]), parameters=parameters, seed=seed,
                             spot_rate_per_hour=rng.choice([0.0, 0.0, 2.0]),
                             spot_notices=((rng.choice([300.0, 900.0]), rng.choice([1, 3])),))


@pytest.mark.parametrize("seed", range(24))
def test_no_busy_instance_is_terminated_and_no_job_lost_whatever_the_workload(seed):
    report = simulate.run(random_scenario(seed))
    r = report.result
    assert (r.busy_terminated, r.jobs_lost, r.jobs_cut) == (0, 0, 0), r.as_dict()
    assert r.empty_s is not None  # the group went back to 0
    assert max(len(line) for line in simulate.text(report).splitlines()) <= 80


@pytest.mark.parametrize("seed", range(40))
def test_only_the_protection_lag_could_ever_let_scale_in_take_a_busy_instance(template, seed):
    """A worker protects its instance just after ReceiveMessage returns (0.5 s in the replay): scale-in
    deciding inside that window is the one way to pick a busy instance, and the termination hook then
    drains it (nothing cut). With protection at the receive itself, never: over any workload."""
    s = random_scenario(seed)
    model = scaling.load_model(template, {**s.parameters, "QuietMinutes": 1, "MessagesPerInstance": 1})
    workload = replay.Workload(s.durations_s, s.rate_per_min or 13.0)
    instant = replay.run(model, workload, replay.Fleet(protect_lag_s=0.0, seed=seed, spot_notices=s.spot_notices))
    lagged = replay.run(model, workload, replay.Fleet(seed=seed, spot_notices=s.spot_notices))
    assert (instant.busy_terminated, instant.jobs_cut, instant.jobs_lost) == (0, 0, 0), instant.as_dict()
    assert (lagged.jobs_cut, lagged.jobs_lost) == (0, 0), lagged.as_dict()


def test_a_seed_makes_a_run_repeatable():
    args = ("--jobs", "300", "--job-seconds", "20..90", "--spot-rate", "3", "--seed", "11", "--max-size", "10")
    assert jobctl(*args).stdout == jobctl(*args).stdout
    assert jobctl(*args).stdout != jobctl(*args[:-4], "--seed", "12", "--max-size", "10").stdout


def test_a_long_run_still_fits_80_columns():
    result = jobctl("--jobs", "20000", "--job-seconds", "30", "--max-size", "10")
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "(each column is 8 minutes: the busiest of them)" in result.stdout
    assert lines[-1].startswith(" minute  0         80")


def test_csv_is_the_minute_by_minute_series_and_json_the_same_run():
    args = ("--jobs", "500", "--job-seconds", "40", "--max-size", "12")
    rows = list(csv.DictReader(io.StringIO(jobctl(*args, "--csv").stdout)))
    data = json.loads(jobctl(*args, "--json").stdout)
    assert len(rows) == len(data["series"]) and rows[0].keys() >= {"minute", "visible", "in_flight", "instances",
                                                                     "busy", "desired", "in_alarm", "policy"}
    assert [int(r["instances"]) for r in rows] == [s["instances"] for s in data["series"]]
    assert max(int(r["instances"]) for r in rows) == data["result"]["peak_instances"] == 12
    assert "BacklogAlarm" in {r["in_alarm"] for r in rows} and "ScaleOutPolicy" in {r["policy"] for r in rows}
    assert jobctl(*args, "--csv", "--json").exit_code == 2


def test_a_file_of_durations_is_the_jobs_or_a_distribution(tmp_path):
    path = tmp_path / "durations.txt"
    path.write_text("# measured\n30\n45.5\n\n600\n")
    assert simulate.durations(f"@{path}", None, read=lambda p: open(p).read()) == [30.0, 45.5, 600.0]
    drawn = simulate.durations(f"@{path}", 50, seed=1, read=lambda p: open(p).read())
    assert len(drawn) == 50 and set(drawn) <= {30.0, 45.5, 600.0}
    result = jobctl("--job-seconds", f"@{path}", "--json")
    assert json.loads(result.stdout)["result"]["jobs"] == 3


@pytest.mark.parametrize("args,says", [
    (("--jobs", "5", "--job-seconds", "abc"), "is not SECONDS, LOW..HIGH or @FILE"),
    (("--jobs", "5", "--job-seconds", "90..20"), "from low to high"),
    (("--job-seconds", "30"), "--jobs is needed"),
    (("--jobs", "5", "--job-seconds", "30", "--rate", "fast"), "is not a rate"),
    (("--jobs", "5", "--job-seconds", "30", "--arrival", "burst", "--rate", "5/s"), "exclude each other"),
    (("--jobs", "5", "--job-seconds", "30", "--spot-notice", "10"), "is not MINUTE:COUNT"),
    (("--jobs", "5", "--job-seconds", "30", "--quiet-minutes", "0"), "below the minimum 1"),
])
def test_bad_input_is_a_usage_error(args, says):
    result = jobctl(*args)
    assert result.exit_code == 2 and says in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_rates_in_any_unit():
    assert [simulate.rate(s) for s in ("200/min", "5/s", "3000/h", "12")] == [200, 300, 50, 12]


def test_the_simulated_parameters_are_all_that_change_the_replay(template):
    """Any other template parameter (the command, packages, network...) leaves the run unchanged, so
    simulate offers exactly the ones that matter."""
    samples = {"Command": "convert -resize 50%", "OutputExtension": ".png", "Packages": "ImageMagick",
               "SetupScriptKey": "code/setup.sh", "CodeKey": "code/other.tar.gz", "InputPrefix": "in/",
               "OutputPrefix": "out/", "AlarmEmail": "ops@example.com", "InstanceTypes": "c7i.large",
               "RouteTableIds": "rtb-1", "VpcEndpoints": "true", "Architecture": "arm64", "VolumeSize": "50",
               "LogRetentionDays": "7", "MaxReceiveCount": "2", "S3EventNotifications": "true",
               "VpcId": "vpc-1", "Subnets": "subnet-1,subnet-2",
               "LatestAmiIdX86": "/my/ami", "LatestAmiIdArm64": "/my/ami"}
    specs = {s.name: s for s in param_specs(template)}
    assert set(specs) == set(samples) | set(simulate.SIMULATED)
    workload = simulate.Scenario(tuple(simulate.durations("10..200", 200, seed=2)), "x",
                                 parameters={"MaxSize": 6}, seed=2, spot_rate_per_hour=1.0)
    base = simulate.run(workload, template).result
    for name, value in samples.items():
        assert specs[name].check(value) == value
        other = simulate.run(simulate.Scenario(workload.durations_s, "x", parameters={"MaxSize": 6, name: value},
                                               seed=2, spot_rate_per_hour=1.0), template).result
        assert (other.as_dict(), other.series) == (base.as_dict(), base.series), name
    changed = simulate.run(simulate.Scenario(workload.durations_s, "x", parameters={"MaxSize": 6, "QuietMinutes": 1},
                                             seed=2, spot_rate_per_hour=1.0), template).result
    assert changed.as_dict() != base.as_dict()  # and one that matters does change it


def test_the_model_read_is_the_shipped_templates(template):
    report = simulate.run(simulate.Scenario((60.0,) * 10, "60", parameters={"MaxSize": 3}))
    model = scaling.load_model(template, {"MaxSize": 3})
    assert report.settings["MaxSize"] == "3" and model.max_size == 3
    assert report.settings["QuietMinutes"] == str(template["Parameters"]["QuietMinutes"]["Default"])
    assert report.result.instance_minutes == pytest.approx(report.cost["instance_hours"] * 60, abs=0.06)


def test_the_docs_show_what_the_commands_print():
    """setup.md's chart is the burst scenario's golden output; README's "On real AWS" is the three commands."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "setup.md"), encoding="utf-8") as fh:
        setup = fh.read()
    with open(os.path.join(GOLDEN_DIR, "simulate_burst.txt"), encoding="utf-8") as fh:
        assert "$ jobctl simulate " + " ".join(GOLDEN["burst"]) + "\n" + fh.read() + "```" in setup
    with open(os.path.join(root, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    section = readme.split("## On real AWS", 1)[1].split("\n## ", 1)[0]
    block = section.split("```")[1]
    assert [line.split()[:2] for line in block.strip().splitlines() if not line.startswith(" ")] == [
        ["jobctl", "deploy"], ["sendjobs", "./photos"], ["jobctl", "destroy"]]
