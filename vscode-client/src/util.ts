// Small pure helpers shared by the controller; unit-tested.

export interface Debounced {
  (): void;
  /** Runs a pending call now (used before stopping, so a queued push is not lost or run late). */
  flush(): void;
  cancel(): void;
}

/** Runs `fn` once, `waitMs` after the last of a burst of calls (settings.json saves come in bursts). */
export function debounce(fn: () => void, waitMs: number): Debounced {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const run = () => {
    timer = undefined;
    fn();
  };
  const debounced = (() => {
    if (timer !== undefined) {
      clearTimeout(timer);
    }
    timer = setTimeout(run, waitMs);
  }) as Debounced;
  debounced.flush = () => {
    if (timer !== undefined) {
      clearTimeout(timer);
      run();
    }
  };
  debounced.cancel = () => {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
  };
  return debounced;
}

/** Delay before the next `waferline/status` poll while the model loads: 250 ms, growing to 2 s. */
export function nextPollDelayMs(previousMs: number | undefined): number {
  if (previousMs === undefined) {
    return 250;
  }
  return Math.min(2000, Math.round(previousMs * 1.5));
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    return err.message;
  }
  return String(err);
}

export type LogLevelName = "trace" | "debug" | "info" | "warn" | "error";

const LEVEL_WORDS: Record<string, LogLevelName> = {
  TRACE: "trace",
  DEBUG: "debug",
  INFO: "info",
  WARN: "warn",
  WARNING: "warn",
  ERROR: "error",
  CRITICAL: "error",
  FATAL: "error",
};

// Optional timestamp ("2026-11-28 14:25:51,914" or ISO), then the level word, as Python's logging
// writes it ("%(asctime)s %(levelname)s ..." or the default "LEVEL:name:message").
const LEVELED_LINE =
  /^(?:\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\s+)?\[?(TRACE|DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\]?(?::|\s+)(.*)$/;

/**
 * The output-channel level of one line of the server's stderr. The language client would log every
 * stderr line as an error; the server's logging says the level itself. A line without a level (a
 * traceback's body, a continuation) keeps the level of the line before it; a traceback's first line is
 * an error. The timestamp is dropped: the output channel adds its own.
 */
export function serverLogLine(line: string, previous: LogLevelName): { level: LogLevelName; text: string } {
  const m = LEVELED_LINE.exec(line);
  if (m) {
    return { level: LEVEL_WORDS[m[1]], text: m[2] };
  }
  if (line.startsWith("Traceback (most recent call last)")) {
    return { level: "error", text: line };
  }
  return { level: previous, text: line };
}
