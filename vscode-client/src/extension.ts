// Entry point: wires settings, status bar, server and commands, then returns at once. The server (and
// its model load) starts in the background, so activation costs only the bundle load and this wiring.
import * as vscode from "vscode";
import { WaferReport } from "./report";
import { ServerController } from "./server";
import { SECTION, readSettings } from "./settings";
import { StatusBar } from "./status";
import * as api from "./vscodeapi";

// Set by the esbuild banner and footer, on the first and last lines of the bundle (scripts/build.mjs).
declare const __waferlineBundleStartMs: number | undefined;
declare const __waferlineBundleEndMs: number | undefined;

let server: ServerController | undefined;

function currentSettings() {
  const config = api.getConfiguration();
  return readSettings((key) => config.get(key));
}

export function activate(context: vscode.ExtensionContext): void {
  const activateStartMs = performance.now();
  const output = api.createLogOutputChannel("Waferline");
  context.subscriptions.push(output);

  const settings = currentSettings();
  const item = api.createStatusBarItem("waferline.status", 100);
  item.name = "Waferline";
  item.command = "waferline.showWaferReport";
  item.show();
  context.subscriptions.push(item);
  const status = new StatusBar(item, settings.server.enabled, api.errorBackground());

  const controller = new ServerController(output, status, settings);
  server = controller;
  const report = new WaferReport(controller);
  context.subscriptions.push(
    controller,
    report,
    api.registerCommand("waferline.restartServer", () => controller.restart()),
    api.registerCommand("waferline.enable", () => api.setEnabled(true)),
    api.registerCommand("waferline.disable", () => api.setEnabled(false)),
    api.registerCommand("waferline.showWaferReport", () => report.show()),
    api.registerCommand("waferline.showOutput", () => output.show()),
    api.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration(SECTION)) {
        controller.onSettingsChanged(currentSettings());
      }
    }),
  );

  void controller.start();

  const endMs = performance.now();
  const activateMs = endMs - activateStartMs;
  if (typeof __waferlineBundleStartMs === "number" && typeof __waferlineBundleEndMs === "number") {
    const loadMs = __waferlineBundleEndMs - __waferlineBundleStartMs;
    output.info(
      `Activated in ${(loadMs + activateMs).toFixed(1)} ms (bundle evaluation ${loadMs.toFixed(1)} ms + ` +
        `activate() ${activateMs.toFixed(1)} ms; VS Code's own wait between them ` +
        `${(activateStartMs - __waferlineBundleEndMs).toFixed(1)} ms); the model loads in the server.`,
    );
  } else {
    output.info(`Activated: activate() took ${activateMs.toFixed(1)} ms; the model loads in the server.`);
  }
}

export function deactivate(): Promise<void> | undefined {
  // VS Code waits for this promise, so the server gets its shutdown/exit instead of a kill.
  const stopping = server?.stop();
  server = undefined;
  return stopping;
}
