// The status-bar item: model state from `waferline/status`, last speeds from `waferline/metrics`.
// The formatting is pure (unit-tested); `StatusBar` only copies its result onto the item it is given.

/** Result of the custom request `waferline/status` (contract). */
export interface ServerStatus {
  model: string;
  state: "loading" | "ready" | "error" | "disabled";
  message: string;
  cpu_tokens_per_s: number | null;
  wafer_tokens_per_s: number | null;
  hardware: string;
}

/**
 * Params of the notification `waferline/metrics` (contract), sent after each completion. Every number may
 * be null or missing (the wafer figures are null while the simulator is unavailable), so each is read
 * through `num` below and an absent one is left out of the display rather than shown as 0.
 */
export interface Metrics {
  uri?: string;
  cpu_ms?: number | null;
  new_tokens?: number | null;
  cpu_tokens_per_s?: number | null;
  prompt_tokens?: number | null;
  reused_tokens?: number | null;
  wafer_ms?: number | null;
  wafer_tokens_per_s?: number | null;
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** Client-side phase: before the server answers `waferline/status` we only know the process state. */
export type Phase = "starting" | "running" | "stopped" | "failed";

export interface StatusSnapshot {
  phase: Phase;
  enabled: boolean;
  status?: ServerStatus;
  metrics?: Metrics;
  /** Why the client failed or stopped, shown in the tooltip. */
  error?: string;
}

export interface StatusView {
  text: string;
  tooltip: string;
  /** Accessible label; the e2e test finds the item by it. */
  ariaLabel: string;
  isError: boolean;
}

/** 3 significant figures, then k/M: "8.4", "271", "12.3k", "1.05M". */
export function formatRate(tokensPerSecond: number | null | undefined): string {
  if (tokensPerSecond === null || tokensPerSecond === undefined || !Number.isFinite(tokensPerSecond)) {
    return "–";
  }
  const abs = Math.abs(tokensPerSecond);
  const [scaled, suffix] =
    abs >= 1e6 ? [tokensPerSecond / 1e6, "M"] : abs >= 1e3 ? [tokensPerSecond / 1e3, "k"] : [tokensPerSecond, ""];
  const digits = Math.abs(scaled) >= 100 ? 0 : Math.abs(scaled) >= 10 ? 1 : 2;
  return `${Number(scaled.toFixed(digits))}${suffix}`;
}

function stateOf(s: StatusSnapshot): string {
  if (!s.enabled) {
    return "disabled";
  }
  if (s.phase === "starting") {
    return "starting";
  }
  if (s.phase === "failed") {
    return "error";
  }
  if (s.phase === "stopped") {
    return "stopped";
  }
  return s.status?.state ?? "starting";
}

const ICONS: Record<string, string> = {
  starting: "$(loading~spin)",
  loading: "$(loading~spin)",
  ready: "$(sparkle)",
  disabled: "$(circle-slash)",
  stopped: "$(debug-stop)",
  error: "$(error)",
};

/** "Last completion: 12 tokens in 412 ms on CPU (0.48 ms simulated); prompt 180 tokens, 150 reused". */
export function lastCompletion(m: Metrics): string {
  const newTokens = num(m.new_tokens);
  const cpuMs = num(m.cpu_ms);
  const waferMs = num(m.wafer_ms);
  const prompt = num(m.prompt_tokens);
  const reused = num(m.reused_tokens);
  let line = `Last completion: ${newTokens ?? "?"} tokens`;
  if (cpuMs !== null) {
    line += ` in ${cpuMs.toFixed(0)} ms on CPU`;
  }
  if (waferMs !== null) {
    line += ` (${waferMs.toFixed(2)} ms simulated)`;
  }
  if (prompt !== null) {
    line += `; prompt ${prompt} tokens${reused !== null ? `, ${reused} reused` : ""}`;
  }
  return line;
}

export function formatStatus(s: StatusSnapshot): StatusView {
  const state = stateOf(s);
  const icon = ICONS[state] ?? "$(sparkle)";
  // The latest metrics beat the status reply: they belong to the last completion.
  const cpu = num(s.metrics?.cpu_tokens_per_s) ?? num(s.status?.cpu_tokens_per_s);
  const wafer = num(s.metrics?.wafer_tokens_per_s) ?? num(s.status?.wafer_tokens_per_s);
  const hardware = s.status?.hardware || "wafer";

  let text = `${icon} Waferline`;
  if (state === "ready" && (cpu !== null || wafer !== null)) {
    const parts = [];
    if (cpu !== null) {
      parts.push(`CPU ${formatRate(cpu)} tok/s`);
    }
    if (wafer !== null) {
      parts.push(`${hardware} ${formatRate(wafer)} tok/s`);
    }
    text = `${icon} ${parts.join(" · ")}`;
  } else if (state !== "ready") {
    text = `${icon} Waferline: ${state}`;
  }

  const lines = [`Waferline — ${state}`];
  if (s.status?.model) {
    lines.push(`Model: ${s.status.model}`);
  }
  const message = s.error ?? s.status?.message;
  if (message) {
    lines.push(message);
  }
  if (cpu !== null) {
    lines.push(`CPU: ${formatRate(cpu)} tok/s`);
  }
  if (wafer !== null) {
    lines.push(`Simulated ${hardware}: ${formatRate(wafer)} tok/s`);
  }
  if (s.metrics) {
    lines.push(lastCompletion(s.metrics));
  }
  lines.push("Click for the wafer report.");

  const ariaParts = [`Waferline: ${state}`];
  if (cpu !== null) {
    ariaParts.push(`CPU ${formatRate(cpu)} tokens per second`);
  }
  if (wafer !== null) {
    ariaParts.push(`${hardware} ${formatRate(wafer)} tokens per second`);
  }
  return { text, tooltip: lines.join("\n"), ariaLabel: ariaParts.join(", "), isError: state === "error" };
}

/** The subset of vscode.StatusBarItem that StatusBar writes (so tests can pass a plain object). */
export interface StatusItemLike {
  text: string;
  tooltip: unknown;
  accessibilityInformation?: { label: string };
  backgroundColor?: unknown;
}

/** Holds the snapshot; every change re-renders the item in full, so no field can go stale. */
export class StatusBar {
  private snapshot: StatusSnapshot;

  constructor(
    private readonly item: StatusItemLike,
    enabled: boolean,
    private readonly errorBackground: unknown,
  ) {
    this.snapshot = { phase: "starting", enabled };
    this.render();
  }

  get current(): Readonly<StatusSnapshot> {
    return this.snapshot;
  }

  update(change: Partial<StatusSnapshot>): void {
    this.snapshot = { ...this.snapshot, ...change };
    this.render();
  }

  private render(): void {
    const view = formatStatus(this.snapshot);
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.accessibilityInformation = { label: view.ariaLabel };
    this.item.backgroundColor = view.isError ? this.errorBackground : undefined;
  }
}
