"""Command lines with placeholders: substituted inside one argument, never split, typos refused."""

from __future__ import annotations

import pytest

from filejobs.command import CommandError, JobContext, parse, values_for

HOSTILE = ["$(touch pwned)", "a; rm -rf ~", "it's \"quoted\"", "-rf", "new\nline", "*.txt", "{output}"]


def job_values(name="report.final.md", key=None):
    key = key or f"input/docs/{name}"
    return values_for(input_path=f"/w/job/in/{name}", output_path=f"/w/job/out/{name}.pdf", key=key)


def test_without_placeholders_the_original_form_is_kept_byte_for_byte():
    line = parse(["convert", "-resize", "50%", "{}", "awk '{print $1}'", "{{"])
    assert not line.templated
    assert line.render({"input": "/in/a", "output": "/out/a"}) == [
        "convert", "-resize", "50%", "{}", "awk '{print $1}'", "{{", "/in/a", "/out/a"]


def test_placeholders_are_substituted_inside_one_argument_each():
    line = parse(["pandoc", "{input}", "-o", "{output}", "--metadata=title:{stem}", "--from={ext}"])
    assert line.render(job_values()) == ["pandoc", "/w/job/in/report.final.md", "-o", "/w/job/out/report.final.md.pdf",
                                         "--metadata=title:report.final", "--from=.md"]


def test_double_braces_are_literal_braces():
    line = parse(["jq", "{{name: .a}}", "{input}", "--arg", "x", "{{{key}}}", "{output}"])
    assert line.render(job_values())[1] == "{name: .a}"
    assert line.render(job_values())[5] == "{input/docs/report.final.md}"


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_file_name_stays_one_argument_and_is_never_interpreted(name):
    line = parse(["tool", "--in={input}", "{name}", "{output}"])
    argv = line.render(job_values(name=name, key=f"input/{name}"))
    assert len(argv) == 4
    assert argv[1] == f"--in=/w/job/in/{name}" and argv[2] == name


@pytest.mark.parametrize("argv, why", [
    (["tool", "{inptu}", "{output}"], "unknown placeholder {inptu}"),
    (["{input}", "{output}"], "program name cannot contain a placeholder"),
    (["tool", "{input}"], "must name {output} or {outdir}"),
    (["tool", "{output}", "{outdir}"], "not both"),
    ([], "empty command"),
])
def test_a_bad_template_is_refused_with_one_line(argv, why):
    with pytest.raises(CommandError, match=why.replace("{", r"\{").replace("}", r"\}")) as err:
        parse(argv)
    assert "\n" not in str(err.value)


def test_outdir_marks_a_directory_output():
    assert parse(["gdal_translate", "{input}", "{outdir}/tile.tif"]).output_is_dir
    assert not parse(["cp", "{input}", "{output}"]).output_is_dir


@pytest.mark.parametrize("name, stem, ext", [
    ("a.tar.gz", "a.tar", ".gz"), ("README", "README", ""), (".bashrc", ".bashrc", ""), ("x.", "x", "."),
])
def test_stem_and_ext_split_at_the_last_dot_of_the_name(name, stem, ext):
    v = job_values(name=name)
    assert (v["name"], v["stem"], v["ext"]) == (name, stem, ext)


def test_the_advice_for_an_unknown_placeholder_says_how_to_write_literal_braces():
    with pytest.raises(CommandError) as err:
        parse(["awk", "{print}"])
    assert "for literal braces write {{ and }} in a command that names {input} and {output}" in str(err.value)
    line = parse(["awk", "{{print}}", "{input}", "{output}"])
    assert line.render(job_values())[1] == "{print}"


def test_the_job_context_is_one_environment_variable_each():
    ctx = JobContext(bucket="b", input_key="input/a b.txt", output_key="output/a b.txt.out", batch_id=None,
                     attempt=2, message_id="m-1")
    assert ctx.environ() == {"FILEJOBS_BUCKET": "b", "FILEJOBS_INPUT_KEY": "input/a b.txt",
                             "FILEJOBS_OUTPUT_KEY": "output/a b.txt.out", "FILEJOBS_BATCH_ID": "",
                             "FILEJOBS_ATTEMPT": "2", "FILEJOBS_MESSAGE_ID": "m-1"}


@pytest.mark.parametrize("argv, name, dash", [
    (["tool", "{stem}", "{output}"], "-rf.txt", "-rf"),
    (["tool", "{name}", "{output}"], "--help", "--help"),
    (["tool", "-o", "{output}", "{key}"], "-x", "-x"),
])
def test_a_name_that_starts_an_argument_with_a_dash_is_option_like(argv, name, dash):
    values = values_for(input_path="/w/in/x", output_path="/w/out/x", key=name)
    assert parse(argv).option_like(values) == dash


@pytest.mark.parametrize("argv", [
    ["tool", "--title={stem}", "{output}"],  # inside an option
    ["tool", "{output}", "--", "{stem}"],  # after the end of options
    ["tool", "x{name}", "{output}"],  # not at the start
    ["tool", "{input}", "{output}"],  # paths are absolute
])
def test_a_dash_name_is_harmless_inside_an_option_after_double_dash_or_not_first(argv):
    values = values_for(input_path="/w/in/-rf", output_path="/w/out/-rf.out", key="-rf")
    assert parse(argv).option_like(values) is None


def test_a_placeholder_at_the_start_of_an_argument_is_its_first_part():
    assert parse(["tool", "{stem}.png", "{output}"]).parts[1] == (("stem",), ".png")
