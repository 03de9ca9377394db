// Settings of section "waferline": read once into a typed, fully defaulted value, and split into what the
// server receives (initializationOptions and workspace/didChangeConfiguration) and what only the client
// uses (how to start the server). Pure: no `vscode` import, so the Node unit tests load it directly.
import manifest from "../package.json";

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
export type Hardware = "cs3" | "wse2" | "wse3";
export type ServerLogLevel = "error" | "warning" | "info" | "debug";
export type Backend = "local" | "llamacpp" | "openai" | "openai-raw";
export type FimTemplate = "" | "qwen2.5-coder" | "starcoder" | "codellama" | "deepseek-coder";

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
  contextTokens: number | null; // null: the model's budget (the server decides)
  backend: Backend;
  endpoint: string;
  remoteModel: string;
  fimTemplate: FimTemplate;
  apiKeyEnv: string;
  remoteTimeoutMs: number;
  verifyTls: boolean;
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

/** Reads one key of the section (relative, e.g. "server.pythonPath"); undefined when unset. */
export type ConfigGetter = (key: string) => unknown;

/** A value as the server should get it, or undefined when it is wrong-typed (settings.json is hand-edited). */
type Reader<T> = (value: unknown) => T | undefined;

const text: Reader<string> = (v) => (typeof v === "string" && v.trim() !== "" ? v.trim() : undefined);
/** A string that may be empty ("" = unset: the server chooses). */
const optionalText: Reader<string> = (v) => (typeof v === "string" ? v.trim() : undefined);
const bool: Reader<boolean> = (v) => (typeof v === "boolean" ? v : undefined);
const nonNegative: Reader<number> = (v) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined);
const intFrom =
  (min: number): Reader<number> =>
  (v) =>
    typeof v === "number" && Number.isInteger(v) && v >= min ? v : undefined;
/** null is a value of its own ("unset: the server chooses"); anything `read` refuses is still wrong. */
const nullable =
  <T>(read: Reader<T>): Reader<T | null> =>
  (v) =>
    v === null ? null : read(v);
const oneOf =
  <T extends string>(...values: T[]): Reader<T> =>
  (v) =>
    typeof v === "string" && (values as string[]).includes(v) ? (v as T) : undefined;

/** Every server setting and how it is read; the server checks ranges itself and says what it refused. */
const SERVER_READERS: { [K in keyof ServerSettings]: Reader<ServerSettings[K]> } = {
  model: text,
  maxNewTokens: intFrom(1),
  maxPromptTokens: intFrom(1),
  temperature: nonNegative,
  mode: oneOf<Mode>("line", "block"),
  hardware: oneOf<Hardware>("cs3", "wse2", "wse3"),
  enabled: bool,
  logLevel: oneOf<ServerLogLevel>("error", "warning", "info", "debug"),
  threads: intFrom(1),
  maxContext: intFrom(1),
  coldPromptTokens: intFrom(0),
  kvSlots: intFrom(1),
  prefillOnOpen: bool,
  context: bool,
  contextTokens: nullable(intFrom(0)),
  backend: oneOf<Backend>("local", "llamacpp", "openai", "openai-raw"),
  endpoint: optionalText,
  remoteModel: optionalText,
  fimTemplate: oneOf<FimTemplate>("", "qwen2.5-coder", "starcoder", "codellama", "deepseek-coder"),
  apiKeyEnv: optionalText,
  remoteTimeoutMs: intFrom(1),
  verifyTls: bool,
};

type Properties = Record<string, { default?: unknown } | undefined>;

/** Each server setting read with `get`, its reader deciding; a missing or wrong value gives `fallback`'s. */
function readServer(get: ConfigGetter, fallback?: ServerSettings): ServerSettings {
  const out: Record<string, unknown> = {};
  for (const [key, read] of Object.entries(SERVER_READERS) as [keyof ServerSettings, Reader<unknown>][]) {
    const got = read(get(key));
    const value = got !== undefined ? got : fallback?.[key];
    if (value === undefined) {
      throw new Error(`package.json declares no valid default for ${SECTION}.${key}`);
    }
    out[key] = value;
  }
  return out as unknown as ServerSettings;
}

/** The defaults a manifest declares (`contributes.configuration.properties`); throws when one is missing. */
export function manifestDefaults(properties: Properties): ServerSettings {
  return readServer((key) => properties[`${SECTION}.${key}`]?.default);
}

/**
 * The fallbacks: read from package.json, not copied. The manifest itself is checked against the server's Settings
 * (tests/test_settings_sources.py), the one place the defaults are written.
 */
export const DEFAULT_SERVER_SETTINGS: ServerSettings = manifestDefaults(
  manifest.contributes.configuration.properties as Properties,
);

/** A wrong-typed value falls back to its default rather than reaching the server. */
export function readSettings(get: ConfigGetter): Settings {
  const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((part) => typeof part === "string");
  const pythonPath = get("server.pythonPath");
  const command = get("server.command");
  return {
    server: readServer(get, DEFAULT_SERVER_SETTINGS),
    launch: {
      pythonPath: typeof pythonPath === "string" ? pythonPath.trim() : "",
      command: isStringArray(command) ? command.filter((part) => part.length > 0) : [],
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
