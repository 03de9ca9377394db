// Settings of section "waferline": read once into a typed, fully defaulted value, and split into what the
// server receives (initializationOptions and workspace/didChangeConfiguration) and what only the client
// uses (how to start the server). Pure: no `vscode` import, so the Node unit tests load it directly.

/** Languages the server completes; package.json `activationEvents` must list exactly these. */
export const SERVED_LANGUAGES: readonly string[] = [
  "python",
  "javascript",
  "javascriptreact",
  "typescript",
  "typescriptreact",
  "go",
  "rust",
  "c",
  "cpp",
  "java",
  "shellscript",
  "lua",
];

export const SECTION = "waferline";

export type Mode = "line" | "block";
export type Hardware = "wse2" | "wse3";
export type ServerLogLevel = "error" | "warning" | "info" | "debug";

/** What the server reads (the contract's "waferline" section), camelCase as in package.json. */
export interface ServerSettings {
  model: string;
  maxNewTokens: number;
  maxPromptTokens: number;
  temperature: number;
  mode: Mode;
  hardware: Hardware;
  enabled: boolean;
  logLevel: ServerLogLevel;
  threads: number;
  maxContext: number;
  coldPromptTokens: number;
  kvSlots: number;
  prefillOnOpen: boolean;
  context: boolean;
  contextTokens: number;
}

/** How to start the server; never sent to it. */
export interface LaunchSettings {
  pythonPath: string;
  command: string[];
}

export interface Settings {
  server: ServerSettings;
  launch: LaunchSettings;
}

/** Mirrors the defaults in package.json `contributes.configuration`. */
export const DEFAULT_SERVER_SETTINGS: ServerSettings = {
  model: "smollm2-135m",
  maxNewTokens: 64,
  maxPromptTokens: 1024,
  temperature: 0,
  mode: "line",
  hardware: "wse3",
  enabled: true,
  logLevel: "info",
  threads: 2,
  maxContext: 2048,
  coldPromptTokens: 384,
  kvSlots: 4,
  prefillOnOpen: true,
  context: false,
  contextTokens: 512,
};

/** Reads one key of the section (relative, e.g. "server.pythonPath"); undefined when unset. */
export type ConfigGetter = (key: string) => unknown;

function pick<T>(value: unknown, ok: (v: unknown) => v is T, fallback: T): T {
  return ok(value) ? value : fallback;
}
const isString = (v: unknown): v is string => typeof v === "string";
const isBool = (v: unknown): v is boolean => typeof v === "boolean";
const isFiniteNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const isPositiveInt = (v: unknown): v is number => isFiniteNumber(v) && Number.isInteger(v) && v > 0;
const isNonNegativeInt = (v: unknown): v is number => isFiniteNumber(v) && Number.isInteger(v) && v >= 0;
const oneOf =
  <T extends string>(...values: T[]) =>
  (v: unknown): v is T =>
    typeof v === "string" && (values as string[]).includes(v);
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);

/** A wrong-typed value falls back to its default rather than reaching the server (settings.json is hand-edited). */
export function readSettings(get: ConfigGetter): Settings {
  const d = DEFAULT_SERVER_SETTINGS;
  const temperature = pick(get("temperature"), isFiniteNumber, d.temperature);
  return {
    server: {
      model: pick(get("model"), isString, d.model).trim() || d.model,
      maxNewTokens: pick(get("maxNewTokens"), isPositiveInt, d.maxNewTokens),
      maxPromptTokens: pick(get("maxPromptTokens"), isPositiveInt, d.maxPromptTokens),
      temperature: temperature < 0 ? d.temperature : temperature,
      mode: pick(get("mode"), oneOf<Mode>("line", "block"), d.mode),
      hardware: pick(get("hardware"), oneOf<Hardware>("wse2", "wse3"), d.hardware),
      enabled: pick(get("enabled"), isBool, d.enabled),
      logLevel: pick(get("logLevel"), oneOf<ServerLogLevel>("error", "warning", "info", "debug"), d.logLevel),
      threads: pick(get("threads"), isPositiveInt, d.threads),
      maxContext: pick(get("maxContext"), isPositiveInt, d.maxContext),
      coldPromptTokens: pick(get("coldPromptTokens"), isNonNegativeInt, d.coldPromptTokens),
      kvSlots: pick(get("kvSlots"), isPositiveInt, d.kvSlots),
      prefillOnOpen: pick(get("prefillOnOpen"), isBool, d.prefillOnOpen),
      context: pick(get("context"), isBool, d.context),
      contextTokens: pick(get("contextTokens"), isNonNegativeInt, d.contextTokens),
    },
    launch: {
      pythonPath: pick(get("server.pythonPath"), isString, "").trim(),
      command: pick(get("server.command"), isStringArray, []).filter((part) => part.length > 0),
    },
  };
}

/**
 * Keys whose change needs a new server process. The launch keys obviously; `model`, `threads` and
 * `maxContext` too: they shape the loaded model, and a restart is the one reload every server version
 * handles (the new process reads them from initializationOptions).
 */
export function needsRestart(before: Settings, after: Settings): boolean {
  return (
    before.launch.pythonPath !== after.launch.pythonPath ||
    before.launch.command.join("\0") !== after.launch.command.join("\0") ||
    before.server.model !== after.server.model ||
    before.server.threads !== after.server.threads ||
    before.server.maxContext !== after.server.maxContext
  );
}

export function serverSettingsChanged(before: Settings, after: Settings): boolean {
  return JSON.stringify(before.server) !== JSON.stringify(after.server);
}

export interface ServerLaunch {
  command: string;
  args: string[];
}

export interface PathContext {
  /** First workspace folder, for `${workspaceFolder}` in paths. */
  workspaceFolder?: string;
  homeDir: string;
}

/** Expands `~` and `${workspaceFolder}` / `${userHome}` the way users write them in settings.json. */
export function expandPath(value: string, ctx: PathContext): string {
  let out = value;
  if (out === "~" || out.startsWith("~/")) {
    out = ctx.homeDir + out.slice(1);
  }
  out = out.replace(/\$\{userHome\}/g, ctx.homeDir);
  if (ctx.workspaceFolder !== undefined) {
    out = out.replace(/\$\{workspaceFolder\}/g, ctx.workspaceFolder);
  }
  return out;
}

/** `server.command` wins when set; else `<pythonPath or python3> -m lsp_server`. */
export function serverLaunch(launch: LaunchSettings, ctx: PathContext): ServerLaunch {
  if (launch.command.length > 0) {
    const [command, ...args] = launch.command.map((part) => expandPath(part, ctx));
    return { command, args };
  }
  const python = launch.pythonPath ? expandPath(launch.pythonPath, ctx) : "python3";
  return { command: python, args: ["-m", "lsp_server"] };
}

/** The payload of workspace/didChangeConfiguration: settings keyed by section, as pull-model servers expect. */
export function didChangeConfigurationParams(server: ServerSettings): { settings: { waferline: ServerSettings } } {
  return { settings: { [SECTION]: server } as { waferline: ServerSettings } };
}
