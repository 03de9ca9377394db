import assert from "node:assert/strict";
import { describe, it, mock } from "node:test";
import { debounce, errorMessage, nextPollDelayMs, serverLogLine } from "../../src/util";

describe("debounce", () => {
  it("runs once after the last call of a burst", () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      let calls = 0;
      const d = debounce(() => calls++, 400);
      d();
      mock.timers.tick(300);
      d();
      mock.timers.tick(300);
      assert.equal(calls, 0);
      mock.timers.tick(100);
      assert.equal(calls, 1);
      mock.timers.tick(1000);
      assert.equal(calls, 1);
    } finally {
      mock.timers.reset();
    }
  });

  it("flushes a pending call now and cancels one for good", () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      let calls = 0;
      const d = debounce(() => calls++, 400);
      d.flush();
      assert.equal(calls, 0, "nothing pending, nothing run");
      d();
      d.flush();
      assert.equal(calls, 1);
      d();
      d.cancel();
      mock.timers.tick(1000);
      assert.equal(calls, 1);
    } finally {
      mock.timers.reset();
    }
  });
});

describe("nextPollDelayMs", () => {
  it("starts at 250 ms and grows to a 2 s cap", () => {
    const delays: number[] = [];
    let d: number | undefined;
    for (let i = 0; i < 8; i++) {
      d = nextPollDelayMs(d);
      delays.push(d);
    }
    assert.deepEqual(delays, [250, 375, 563, 845, 1268, 1902, 2000, 2000]);
  });
});

describe("errorMessage", () => {
  it("takes an Error's message or stringifies", () => {
    assert.equal(errorMessage(new Error("boom")), "boom");
    assert.equal(errorMessage("plain"), "plain");
  });
});

describe("serverLogLine", () => {
  it("takes the level from Python logging lines and drops their timestamp", () => {
    assert.deepEqual(
      serverLogLine("2026-11-28 14:25:51,914 DEBUG pygls.protocol: Server capabilities", "info"),
      { level: "debug", text: "pygls.protocol: Server capabilities" },
    );
    assert.deepEqual(serverLogLine("2026-11-28T14:25:51.914Z WARNING waferline: slow", "info"), {
      level: "warn",
      text: "waferline: slow",
    });
    assert.deepEqual(serverLogLine("INFO:waferline.lsp:model loaded", "debug"), {
      level: "info",
      text: "waferline.lsp:model loaded",
    });
    assert.deepEqual(serverLogLine("[ERROR] boom", "debug"), { level: "error", text: "boom" });
    assert.equal(serverLogLine("CRITICAL x", "debug").level, "error");
  });

  it("gives unlevelled lines the previous level, and tracebacks error", () => {
    assert.deepEqual(serverLogLine('  File "x.py", line 3', "warn"), { level: "warn", text: '  File "x.py", line 3' });
    assert.equal(serverLogLine("Traceback (most recent call last):", "debug").level, "error");
    assert.equal(serverLogLine("INFORMATION is not a level", "debug").level, "debug");
  });
});
