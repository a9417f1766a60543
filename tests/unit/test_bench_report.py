from sentinel.bench.results import Machine, ServeCell, ServeReport
from sentinel.bench.report import (headline_markdown, ratio, ratios, serve_markdown,
                                   write_section)

MACHINE = Machine(date="2026-01-01T00:00:00+00:00", host="h", cpu="cpu", cores=2, memory_gib=8.0,
                  os="Debian", python="3.11.7", packages=(("onnxruntime", "1.32.0"),),
                  load_before=(0.1, 0.2, 0.3))


def cell(target, ips, candidates=256, concurrency=8, run=0, p50_ms=1.0):
    return ServeCell(target=target, candidates=candidates, concurrency=concurrency, requests=100,
                     errors=0, seconds=1.0, rps=ips / candidates, ips=ips, p50_ms=p50_ms,
                     p99_ms=2.0, client_cpu_us=100.0, run=run)


def report():
    return ServeReport(machine=MACHINE, command="sentinel bench serve", duration_s=1.0, cells=(
        cell("in-process", 1000.0), cell("sentinel", 600.0), cell("pytriton", 200.0),
        cell("flask", 150.0)))


def test_ratios_divide_inferences_per_second_of_the_same_point():
    r = report()
    assert ratio(r, "sentinel", "in-process", 256, 8) == 0.6
    assert ratio(r, "sentinel", "flask", 256, 8) == 4.0
    assert ratio(r, "sentinel", "flask", 256, 32) != ratio(r, "sentinel", "flask", 256, 32)  # nan


def test_serve_markdown_holds_every_cell_the_ratios_and_the_machine():
    md = serve_markdown(report())
    assert "| (b) Sentinel on Triton | 256 | 8 | 600 | – |" in md
    assert "| 256 | 8 | 0.60 | 3.00 | 4.00 |" in md
    assert "2 cores" in md and "onnxruntime 1.32.0" in md and "sentinel bench serve" in md


def test_headline_has_one_row_per_target():
    md = headline_markdown(report())
    assert md.count("\n| (") == 4 and "8 clients" in md


def test_write_section_replaces_only_its_own_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    write_section("serve", "first serve", doc)
    write_section("swap", "the swaps", doc)
    text = doc.read_text().replace("<!-- bench:swap:end -->", "<!-- bench:swap:end -->\n\nhand note")
    doc.write_text(text)
    write_section("serve", "second serve", doc)
    text = doc.read_text()
    assert "second serve" in text and "first serve" not in text
    assert "the swaps" in text and "hand note" in text
    assert text.count("<!-- bench:serve:start -->") == 1


def test_write_section_appends_a_missing_section(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text("# Mine\n")
    write_section("monitor", "cycle table", doc)
    assert doc.read_text().startswith("# Mine") and "cycle table" in doc.read_text()


def test_repeated_runs_give_medians_ranges_and_paired_ratios():
    r = ServeReport(machine=MACHINE, command="sentinel bench serve", duration_s=1.0, cells=(
        cell("sentinel", 600.0, run=0, p50_ms=1.0), cell("sentinel", 900.0, run=1, p50_ms=3.0),
        cell("sentinel", 660.0, run=2, p50_ms=2.0),
        cell("flask", 200.0, run=0), cell("flask", 300.0, run=1), cell("flask", 110.0, run=2)))
    # paired by run: 600/200, 900/300, 660/110 -> 3.0, 3.0, 6.0
    assert ratios(r, "sentinel", "flask", 256, 8) == [3.0, 3.0, 6.0]
    assert ratio(r, "sentinel", "flask", 256, 8) == 3.0
    assert r.cell("sentinel", 256, 8).ips == 660.0  # the median run
    md = serve_markdown(r)
    assert "| (b) Sentinel on Triton | 256 | 8 | 660 | 600–900 |" in md
    assert "| 2.00 | 1.00–3.00 |" in md
    assert "3 time(s)" in md and "| 256 | 8 | – | – | 3.00 [3.00–6.00] |" in md
    assert "| (b) Sentinel on Triton | 660 |" in headline_markdown(r)


def test_search_latency_gives_medians_ranges_and_each_runs_hybrid_over_dense():
    from sentinel.bench.search import SearchBenchReport, latency_lines
    p50 = {("dense", 0): 4.0, ("hybrid", 0): 5.0, ("dense", 1): 6.0, ("hybrid", 1): 9.0,
           ("dense", 2): 5.0, ("hybrid", 2): 6.0}
    cells = tuple(cell(mode, 100.0, candidates=1, concurrency=8, run=run, p50_ms=v)
                  for (mode, run), v in p50.items())
    r = SearchBenchReport(MACHINE, "sentinel bench search", "1", {}, None, (), cells, True)
    assert r.p50("hybrid", 8) == 6.0 and r.p50_ratios("hybrid", 8) == [1.25, 1.5, 1.2]
    md = "\n".join(latency_lines(r))
    assert "| dense | 8 | 100 | 5.00 | 4.00–6.00 | 2.00 | 0 |" in md
    assert "every cell 3 time(s)" in md
    assert "p50 hybrid / dense at 8 client(s), each run's ratio: median 1.25 [1.20–1.50]" in md


def test_search_in_process_split_gives_the_median_of_the_runs_and_their_range():
    from sentinel.bench.search import InProcessSplit, split_lines
    md = "\n".join(split_lines(InProcessSplit(200, (("dense request", (4.0, 5.0, 4.5)),
                                                    ("hybrid request", (4.2, 5.1, 4.6))))))
    assert "200 latency queries × 3 run(s)" in md
    assert "| dense request | 4.500 | 4.000–5.000 |" in md
