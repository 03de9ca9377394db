// Owns the LanguageClient: start, stop, debounced restart and settings push; feeds the status bar from
// `waferline/status` (polled while the model loads) and `waferline/metrics` (after each completion).
// Start/stop/restart are queued one after another, so a burst of commands never runs two servers.
import * as os from "os";
import * as readline from "readline";
import type { Readable } from "stream";
import * as vscode from "vscode";
import {
  DidChangeConfigurationNotification,
  LanguageClient,
  LanguageClientOptions,
  RevealOutputChannelOn,
  ServerOptions,
  State,
  TransportKind,
} from "vscode-languageclient/node";
import { SimulateResult } from "./reportHtml";
import {
  SERVED_LANGUAGES,
  Settings,
  didChangeConfigurationParams,
  needsRestart,
  serverLaunch,
  serverSettingsChanged,
} from "./settings";
import { Metrics, ServerStatus, StatusBar } from "./status";
import { Debounced, LogLevelName, debounce, errorMessage, nextPollDelayMs, serverLogLine } from "./util";
import * as api from "./vscodeapi";

type Classify = (line: string, previous: LogLevelName) => { level: LogLevelName; text: string };

/** Forwards a stream line by line to the output channel at the level `classify` gives each line. */
function logLines(classify: Classify) {
  return (input: Readable, channel: vscode.LogOutputChannel): void => {
    let previous: LogLevelName = "info";
    readline.createInterface({ input, crlfDelay: Infinity, terminal: false }).on("line", (line: string) => {
      const { level, text } = classify(line, previous);
      previous = level;
      channel[level](text);
    });
  };
}

/** Settings saves arrive in bursts (one per keystroke with auto-save); act once they settle. */
const SETTINGS_DEBOUNCE_MS = 400;
const STOP_TIMEOUT_MS = 3000;
/** How long a command waits for a server that is (re)starting. */
const START_WAIT_MS = 30_000;

export class ServerController implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private clientSubscriptions: vscode.Disposable[] = [];
  private queue: Promise<void> = Promise.resolve();
  private pollTimer: ReturnType<typeof setTimeout> | undefined;
  private pollDelayMs: number | undefined;
  /** Bumped by every pollStatus/stopPolling, so an answer in flight from an older poll schedules nothing. */
  private pollGeneration = 0;
  private disposed = false;
  private readonly restartSoon: Debounced;
  private readonly pushSoon: Debounced;

  constructor(
    private readonly output: vscode.LogOutputChannel,
    private readonly status: StatusBar,
    private settings: Settings,
  ) {
    this.restartSoon = debounce(() => void this.restart(), SETTINGS_DEBOUNCE_MS);
    this.pushSoon = debounce(() => void this.pushSettings(), SETTINGS_DEBOUNCE_MS);
  }

  get current(): Settings {
    return this.settings;
  }

  start(): Promise<void> {
    return this.enqueue(() => this.doStart());
  }

  stop(): Promise<void> {
    return this.enqueue(() => this.doStop());
  }

  restart(): Promise<void> {
    return this.enqueue(async () => {
      await this.doStop();
      await this.doStart();
    });
  }

  /** Called with freshly read settings whenever section "waferline" changes. */
  onSettingsChanged(next: Settings): void {
    const before = this.settings;
    this.settings = next;
    this.status.update({ enabled: next.server.enabled });
    if (needsRestart(before, next)) {
      this.output.info("Server command or model changed; restarting the server.");
      this.pushSoon.cancel();
      this.restartSoon();
    } else if (serverSettingsChanged(before, next)) {
      this.pushSoon();
    }
  }

  async simulate(hardware: string): Promise<SimulateResult> {
    const client = await this.runningClient(START_WAIT_MS);
    if (!client) {
      throw new Error("The Waferline server is not running; run “Waferline: Restart Server”.");
    }
    return client.sendRequest<SimulateResult>("waferline/simulate", { hardware });
  }

  /**
   * The client once it runs: a command issued during a (re)start, ours or the client's automatic one
   * after a crash, waits for it instead of failing. Undefined if it does not run within `timeoutMs`.
   */
  private async runningClient(timeoutMs: number): Promise<LanguageClient | undefined> {
    await this.queue;
    const client = this.client;
    if (!client || client.isRunning()) {
      return client;
    }
    if (client.state !== State.Starting) {
      return undefined;
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(undefined), timeoutMs);
      const listener = client.onDidChangeState((e) => {
        if (e.newState !== State.Starting) {
          finish(e.newState === State.Running ? client : undefined);
        }
      });
      function finish(result: LanguageClient | undefined) {
        clearTimeout(timer);
        listener.dispose();
        resolve(result);
      }
    });
  }

  dispose(): void {
    this.disposed = true;
    this.restartSoon.cancel();
    this.pushSoon.cancel();
    this.stopPolling();
    void this.doStop();
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    const next = this.queue.then(step, step);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async doStart(): Promise<void> {
    if (this.disposed || this.client) {
      return;
    }
    this.status.update({ phase: "starting", status: undefined, metrics: undefined, error: undefined });
    let phase: "running" | "failed" = "failed";
    let failure: string | undefined;
    const workspaceFolder = api.firstWorkspaceFolder();
    const launch = serverLaunch(this.settings.launch, { workspaceFolder, homeDir: os.homedir() });
    try {
      this.output.info(`Starting the server: ${[launch.command, ...launch.args].join(" ")}`);
      const serverOptions: ServerOptions = {
        command: launch.command,
        args: launch.args,
        transport: TransportKind.stdio,
        // Unbuffered stderr, so server logs reach the output channel as they are written.
        options: { cwd: workspaceFolder, env: { ...process.env, PYTHONUNBUFFERED: "1" } },
      };
      const clientOptions: LanguageClientOptions = {
        documentSelector: SERVED_LANGUAGES.flatMap((language) => [
          { scheme: "file", language },
          { scheme: "untitled", language },
        ]),
        // The client turns the protocol trace on while this channel's level is Trace (and off otherwise),
        // with the detail of `waferline.trace.server`.
        outputChannel: this.output,
        traceOutputChannel: this.output,
        // stderr lines keep the level the server's logging gave them (the default would log all as errors).
        stdioOptions: { stdout: logLines((text) => ({ level: "info", text })), stderr: logLines(serverLogLine) },
        revealOutputChannelOn: RevealOutputChannelOn.Never,
        // A function, so a restart sends the settings of that moment.
        initializationOptions: () => this.settings.server,
        middleware: {
          // Disabled: answer at once instead of asking the server to refuse.
          provideInlineCompletionItems: (document, position, context, token, next) =>
            this.settings.server.enabled ? next(document, position, context, token) : null,
          // textDocument/completion is the fallback for editors without ghost text. VS Code has ghost
          // text, and the server's trigger characters (space among them) would pop the suggest widget
          // and run the model twice per keystroke, so the list is never asked for here.
          provideCompletionItem: () => undefined,
        },
      };
      const client = new LanguageClient("waferline", "Waferline", serverOptions, clientOptions);
      this.client = client;
      this.clientSubscriptions.push(
        client.onNotification("waferline/metrics", (metrics: Metrics) => {
          this.status.update({ metrics });
        }),
        client.onDidChangeState((e) => this.onClientState(client, e.newState)),
      );
      await client.start();
      phase = "running";
    } catch (err) {
      failure = `Could not start the Waferline server (${launch.command}): ${errorMessage(err)}`;
      this.output.error(failure);
      await this.doStop();
      void this.offerFix(failure);
    } finally {
      // Never leave the spinner up: whatever happened above, the item says where things stand.
      this.status.update({ phase, error: failure });
    }
    if (phase === "running") {
      this.pollStatus();
    }
  }

  private async doStop(): Promise<void> {
    this.stopPolling();
    const client = this.client;
    this.client = undefined;
    for (const d of this.clientSubscriptions.splice(0)) {
      d.dispose();
    }
    if (!client) {
      return;
    }
    try {
      if (client.needsStop()) {
        await client.stop(STOP_TIMEOUT_MS);
      }
    } catch (err) {
      this.output.warn(`Stopping the server: ${errorMessage(err)}`);
    } finally {
      this.status.update({ phase: "stopped" });
    }
  }

  private onClientState(client: LanguageClient, state: State): void {
    if (client !== this.client) {
      return;
    }
    if (state === State.Running) {
      // Also after the client's own automatic restart of a crashed server.
      this.output.info("Server running.");
      this.status.update({ phase: "running", error: undefined });
      this.pollStatus();
    } else if (state === State.Starting) {
      this.status.update({ phase: "starting" });
    } else if (state === State.Stopped) {
      this.output.info("Server stopped.");
      this.stopPolling();
      this.status.update({ phase: "stopped" });
    }
  }

  private async pushSettings(): Promise<void> {
    const client = this.client;
    if (!client?.isRunning()) {
      return;
    }
    try {
      await client.sendNotification(
        DidChangeConfigurationNotification.type,
        didChangeConfigurationParams(this.settings.server),
      );
      this.pollStatus();
    } catch (err) {
      this.output.warn(`Sending settings to the server: ${errorMessage(err)}`);
    }
  }

  /** Asks `waferline/status` now, then again with a growing delay for as long as the model is loading. */
  private pollStatus(): void {
    this.stopPolling();
    const client = this.client;
    const generation = this.pollGeneration;
    const tick = async (): Promise<void> => {
      this.pollTimer = undefined;
      if (client !== this.client || !client?.isRunning()) {
        return;
      }
      try {
        const status = await client.sendRequest<ServerStatus>("waferline/status", {});
        if (client !== this.client || generation !== this.pollGeneration) {
          return;
        }
        this.status.update({ status });
        if (status.state === "loading") {
          this.pollDelayMs = nextPollDelayMs(this.pollDelayMs);
          this.pollTimer = setTimeout(() => void tick(), this.pollDelayMs);
        } else {
          this.pollDelayMs = undefined;
        }
      } catch (err) {
        this.output.debug(`waferline/status: ${errorMessage(err)}`);
      }
    };
    void tick();
  }

  private stopPolling(): void {
    this.pollGeneration += 1;
    if (this.pollTimer !== undefined) {
      clearTimeout(this.pollTimer);
      this.pollTimer = undefined;
    }
    this.pollDelayMs = undefined;
  }

  private async offerFix(message: string): Promise<void> {
    const choice = await api.showErrorMessage(message, "Open Settings", "Show Output");
    if (choice === "Open Settings") {
      await api.openSettings("waferline.server");
    } else if (choice === "Show Output") {
      this.output.show();
    }
  }
}
