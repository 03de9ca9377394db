import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Metrics, ServerStatus, StatusBar, StatusItemLike, formatRate, formatStatus } from "../../src/status";

const ready: ServerStatus = {
  model: "smollm2-135m",
  state: "ready",
  message: "",
  cpu_tokens_per_s: null,
  wafer_tokens_per_s: null,
  hardware: "wse3",
};
const metrics: Metrics = {
  uri: "file:///a.py",
  cpu_ms: 412.3,
  new_tokens: 12,
  cpu_tokens_per_s: 29.1,
  prompt_tokens: 180,
  reused_tokens: 150,
  wafer_ms: 0.48,
  wafer_tokens_per_s: 24987.2,
};

describe("formatRate", () => {
  it("keeps three significant figures and scales", () => {
    assert.equal(formatRate(8.456), "8.46");
    assert.equal(formatRate(29.14), "29.1");
    assert.equal(formatRate(271.4), "271");
    assert.equal(formatRate(24987.2), "25k");
    assert.equal(formatRate(12345), "12.3k");
    assert.equal(formatRate(1_050_000), "1.05M");
    assert.equal(formatRate(0.04), "0.04");
  });
  it("shows a dash for unknown", () => {
    assert.equal(formatRate(null), "–");
    assert.equal(formatRate(undefined), "–");
    assert.equal(formatRate(Number.NaN), "–");
  });
});

describe("formatStatus", () => {
  it("spins while the process starts and while the model loads", () => {
    assert.match(formatStatus({ phase: "starting", enabled: true }).text, /loading~spin.*starting/);
    const loading = formatStatus({ phase: "running", enabled: true, status: { ...ready, state: "loading" } });
    assert.match(loading.text, /loading~spin.*loading/);
    assert.equal(loading.ariaLabel, "Waferline: loading");
  });

  it("shows CPU and simulated wafer speed once a completion ran", () => {
    const view = formatStatus({ phase: "running", enabled: true, status: ready, metrics });
    assert.equal(view.text, "$(sparkle) CPU 29.1 tok/s · wse3 25k tok/s");
    assert.equal(view.ariaLabel, "Waferline: ready, CPU 29.1 tokens per second, wse3 25k tokens per second");
    assert.match(view.tooltip, /Model: smollm2-135m/);
    assert.match(view.tooltip, /12 tokens in 412 ms on CPU \(0\.48 ms simulated\); prompt 180 tokens, 150 reused/);
    assert.equal(view.isError, false);
  });

  it("falls back to the speeds in the status reply", () => {
    const view = formatStatus({
      phase: "running",
      enabled: true,
      status: { ...ready, cpu_tokens_per_s: 10, wafer_tokens_per_s: 5000 },
    });
    assert.equal(view.text, "$(sparkle) CPU 10 tok/s · wse3 5k tok/s");
  });

  it("leaves out what the server sent as null (wafer figures while the simulator is unavailable)", () => {
    const partial: Metrics = { ...metrics, wafer_ms: null, wafer_tokens_per_s: null, reused_tokens: null };
    const view = formatStatus({ phase: "running", enabled: true, status: ready, metrics: partial });
    assert.equal(view.text, "$(sparkle) CPU 29.1 tok/s");
    assert.match(view.tooltip, /Last completion: 12 tokens in 412 ms on CPU; prompt 180 tokens\n/);
    assert.doesNotMatch(view.tooltip, /Simulated/);
    const junk = { cpu_tokens_per_s: "fast" } as unknown as Metrics;
    assert.match(formatStatus({ phase: "running", enabled: true, status: ready, metrics: junk }).text, /^\$\(sparkle\) Waferline$/);
  });

  it("says disabled whatever the server state", () => {
    const view = formatStatus({ phase: "running", enabled: false, status: ready, metrics });
    assert.match(view.text, /circle-slash.*disabled/);
  });

  it("marks failures as errors with the reason in the tooltip", () => {
    const view = formatStatus({ phase: "failed", enabled: true, error: "spawn python3 ENOENT" });
    assert.equal(view.isError, true);
    assert.match(view.tooltip, /spawn python3 ENOENT/);
    const serverError = formatStatus({
      phase: "running",
      enabled: true,
      status: { ...ready, state: "error", message: "run `waferline model pull`" },
    });
    assert.equal(serverError.isError, true);
    assert.match(serverError.tooltip, /waferline model pull/);
  });
});

describe("StatusBar", () => {
  it("re-renders the whole item on every update", () => {
    const item: StatusItemLike = { text: "", tooltip: "" };
    const bar = new StatusBar(item, true, "ERR");
    assert.match(item.text, /starting/);
    bar.update({ phase: "failed", error: "boom" });
    assert.equal(item.backgroundColor, "ERR");
    bar.update({ phase: "running", error: undefined, status: ready, metrics });
    assert.equal(item.backgroundColor, undefined);
    assert.equal(item.text, "$(sparkle) CPU 29.1 tok/s · wse3 25k tok/s");
    assert.equal(item.accessibilityInformation?.label.startsWith("Waferline: ready"), true);
    assert.equal(bar.current.metrics, metrics);
  });
});
