import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import {
  DEFAULT_SERVER_SETTINGS,
  SERVED_LANGUAGES,
  didChangeConfigurationParams,
  expandPath,
  manifestDefaults,
  needsRestart,
  readSettings,
  serverLaunch,
  serverSettingsChanged,
} from "../../src/settings";

// Compiled to out/tsc/test/unit/; the manifest is four levels up.
const manifest = JSON.parse(fs.readFileSync(path.resolve(__dirname, "../../../../package.json"), "utf8"));
const properties: Record<string, { default: unknown; enum?: unknown[] }> =
  manifest.contributes.configuration.properties;

const fromObject = (values: Record<string, unknown>) => (key: string) => values[key];

describe("package.json agrees with the code", () => {
  it("activates on exactly the served languages, never on '*'", () => {
    const expected = SERVED_LANGUAGES.map((l) => `onLanguage:${l}`);
    assert.deepEqual(manifest.activationEvents, expected);
    assert.ok(!manifest.activationEvents.includes("*"));
  });

  it("falls back to the defaults package.json declares, for every server setting", () => {
    const clientOnly = ["server.pythonPath", "server.command", "trace.server"];
    const serverKeys = Object.keys(properties)
      .map((k) => k.replace(/^waferline\./, ""))
      .filter((k) => !clientOnly.includes(k));
    assert.deepEqual(Object.keys(DEFAULT_SERVER_SETTINGS).sort(), serverKeys.sort());
    for (const key of serverKeys) {
      assert.deepEqual(DEFAULT_SERVER_SETTINGS[key as keyof typeof DEFAULT_SERVER_SETTINGS], properties[`waferline.${key}`].default, key);
    }
    assert.deepEqual(properties["waferline.mode"].enum, ["line", "block"]);
    assert.deepEqual(properties["waferline.hardware"].enum, ["cs3", "wse2", "wse3"]);
  });

  it("refuses a manifest whose default is missing or of the wrong type", () => {
    const without = { ...properties };
    delete without["waferline.kvSlots"];
    assert.throws(() => manifestDefaults(without), /waferline\.kvSlots/);
    const wrong = { ...properties, "waferline.mode": { default: "paragraph" } };
    assert.throws(() => manifestDefaults(wrong), /waferline\.mode/);
  });

  it("reads every declared setting, and only those", () => {
    // trace.server is read by vscode-languageclient itself (setting "<client id>.trace.server").
    const declared = Object.keys(properties)
      .map((k) => k.replace(/^waferline\./, ""))
      .filter((k) => k !== "trace.server")
      .sort();
    const asked: string[] = [];
    readSettings((key) => {
      asked.push(key);
      return undefined;
    });
    assert.deepEqual(asked.sort(), declared);
  });

  it("declares every command the extension registers", () => {
    const declared = manifest.contributes.commands.map((c: { command: string }) => c.command).sort();
    const source = fs.readFileSync(path.resolve(__dirname, "../../../../src/extension.ts"), "utf8");
    const registered = [...source.matchAll(/registerCommand\("([^"]+)"/g)].map((m) => m[1]).sort();
    assert.deepEqual(registered, declared);
  });

  it("names the bundle esbuild writes as main", () => {
    assert.equal(manifest.main, "./out/extension.js");
  });
});

describe("readSettings", () => {
  it("gives the defaults when nothing is set", () => {
    const s = readSettings(() => undefined);
    assert.deepEqual(s.server, DEFAULT_SERVER_SETTINGS);
    assert.deepEqual(s.launch, { pythonPath: "", command: [] });
  });

  it("keeps valid values", () => {
    const server = {
      model: "/models/tiny",
      maxNewTokens: 16,
      maxPromptTokens: 256,
      temperature: 0.2,
      mode: "block",
      hardware: "wse2",
      enabled: false,
      logLevel: "debug",
      threads: 4,
      maxContext: 4096,
      coldPromptTokens: 0,
      kvSlots: 2,
      prefillOnOpen: false,
      context: true,
      contextTokens: 256,
      backend: "openai-raw",
      endpoint: "http://gpu-box:8000/v1",
      remoteModel: "Qwen/Qwen2.5-Coder-7B",
      fimTemplate: "qwen2.5-coder",
      apiKeyEnv: "TEAM_LLM_KEY",
      remoteTimeoutMs: 5000,
      verifyTls: false,
    };
    const s = readSettings(
      fromObject({ ...server, "server.pythonPath": " /venv/bin/python ", "server.command": ["waferline", "serve", ""] }),
    );
    assert.deepEqual(s.server, server);
    assert.deepEqual(s.launch, { pythonPath: "/venv/bin/python", command: ["waferline", "serve"] });
  });

  it("sends an unset contextTokens as null (the model's budget) and a set one as it is", () => {
    assert.equal(DEFAULT_SERVER_SETTINGS.contextTokens, null);
    assert.equal(readSettings(fromObject({ contextTokens: null })).server.contextTokens, null);
    assert.equal(readSettings(fromObject({ contextTokens: 1024 })).server.contextTokens, 1024);
    assert.equal(readSettings(fromObject({ contextTokens: "1024" })).server.contextTokens, null);
  });

  it("replaces wrong-typed or out-of-range values with defaults", () => {
    const s = readSettings(
      fromObject({
        model: "   ",
        maxNewTokens: -3,
        maxPromptTokens: 2.5,
        temperature: -1,
        mode: "paragraph",
        hardware: "wse9",
        enabled: "yes",
        logLevel: 3,
        threads: 0,
        maxContext: "big",
        context: "yes",
        contextTokens: -1,
        backend: "vllm",
        endpoint: 8000,
        fimTemplate: "qwen",
        remoteTimeoutMs: 0,
        verifyTls: "no",
        "server.command": "waferline serve",
      }),
    );
    assert.deepEqual(s.server, DEFAULT_SERVER_SETTINGS);
    assert.deepEqual(s.launch.command, []);
  });
});

describe("serverLaunch", () => {
  const ctx = { workspaceFolder: "/ws", homeDir: "/home/u" };

  it("runs `python3 -m lsp_server` by default", () => {
    assert.deepEqual(serverLaunch({ pythonPath: "", command: [] }, ctx), {
      command: "python3",
      args: ["-m", "lsp_server"],
    });
  });

  it("uses pythonPath, expanding ~ and ${workspaceFolder}", () => {
    assert.deepEqual(serverLaunch({ pythonPath: "${workspaceFolder}/.venv/bin/python", command: [] }, ctx), {
      command: "/ws/.venv/bin/python",
      args: ["-m", "lsp_server"],
    });
    assert.equal(serverLaunch({ pythonPath: "~/venv/bin/python", command: [] }, ctx).command, "/home/u/venv/bin/python");
  });

  it("prefers the full command", () => {
    assert.deepEqual(
      serverLaunch({ pythonPath: "/ignored", command: ["${userHome}/bin/waferline", "serve", "--log-file", "x"] }, ctx),
      { command: "/home/u/bin/waferline", args: ["serve", "--log-file", "x"] },
    );
  });

  it("leaves ${workspaceFolder} alone without a workspace, and ~user paths alone", () => {
    assert.equal(expandPath("${workspaceFolder}/py", { homeDir: "/h" }), "${workspaceFolder}/py");
    assert.equal(expandPath("~other/py", { homeDir: "/h" }), "~other/py");
  });
});

describe("changes", () => {
  const base = readSettings(() => undefined);
  const withServer = (change: object) => ({ ...base, server: { ...base.server, ...change } });

  it("restarts for launch and model changes only", () => {
    assert.equal(needsRestart(base, { ...base, launch: { pythonPath: "/p", command: [] } }), true);
    assert.equal(needsRestart(base, { ...base, launch: { pythonPath: "", command: ["w"] } }), true);
    assert.equal(needsRestart(base, withServer({ model: "other" })), true);
    assert.equal(needsRestart(base, withServer({ threads: 1 })), true);
    assert.equal(needsRestart(base, withServer({ maxNewTokens: 8 })), false);
    assert.equal(needsRestart(base, withServer({ enabled: false })), false);
  });

  it("pushes other server settings", () => {
    assert.equal(serverSettingsChanged(base, withServer({ hardware: "wse2" })), true);
    assert.equal(serverSettingsChanged(base, readSettings(() => undefined)), false);
  });

  it("sends settings under the section name", () => {
    assert.deepEqual(didChangeConfigurationParams(base.server), { settings: { waferline: base.server } });
  });
});
