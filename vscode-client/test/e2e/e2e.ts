// End-to-end test in a real VS Code: code-server serving the workbench, Debian's Chromium driven by
// playwright-core, our .vsix installed, our Python server running a tiny generated model.
// Run by scripts/e2e.sh, which builds the .vsix, installs code-server and Chromium, makes the workspace
// and passes everything here through environment variables (see `requireEnv` below).
//
// Checks, in order (each waits for a readiness signal with a timeout; there is no fixed sleep):
//   1. the extension activates on the Python file and the status bar reaches "ready" (model loaded);
//   2. typing shows ghost text from our server; Tab accepts it; the saved file holds the suggestion;
//   3. the "Complete here" code action inserts a completion at the cursor; the saved file shows it;
//   4. the lightbulb (code actions VS Code asks for by itself) shows on a selection and not at the end of a
//      finished line;
//   5. the disable / enable / restart commands move the status bar through the expected states;
//   6. "Show Wafer Report" opens the webview with the heat-map image loaded.
// Screenshots and logs go to $E2E_ARTIFACTS. Exit code 0 only if every check passed.
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { Browser, Locator, Page, chromium } from "playwright-core";

const TIMEOUT_WORKBENCH_MS = 90_000;
const TIMEOUT_READY_MS = 180_000;
const TIMEOUT_GHOST_MS = 90_000;
const TIMEOUT_ACTION_MS = 90_000;
const TIMEOUT_UI_MS = 30_000;

function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`environment variable ${name} is not set (run vscode-client/scripts/e2e.sh)`);
  }
  return value;
}

const env = {
  node24: requireEnv("E2E_NODE24"),
  codeServer: requireEnv("E2E_CODE_SERVER"),
  chromium: requireEnv("E2E_CHROMIUM"),
  workspace: requireEnv("E2E_WORKSPACE"),
  userDataDir: requireEnv("E2E_USER_DATA_DIR"),
  extensionsDir: requireEnv("E2E_EXTENSIONS_DIR"),
  artifacts: requireEnv("E2E_ARTIFACTS"),
  file: process.env.E2E_FILE ?? "main.py",
};

const log = (message: string) => console.log(`[e2e ${new Date().toISOString().slice(11, 23)}] ${message}`);

// ---------------------------------------------------------------------------------------------------
// code-server

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

interface CodeServer {
  url: string;
  process: ChildProcess;
}

/** Starts code-server in its own process group (detached = setsid) so stopCodeServer can end all of it. */
function startCodeServer(port: number): CodeServer {
  const logFile = fs.openSync(path.join(env.artifacts, "code-server.log"), "w");
  const child = spawn(
    env.node24,
    [
      env.codeServer,
      "--auth",
      "none",
      "--bind-addr",
      `127.0.0.1:${port}`,
      "--user-data-dir",
      env.userDataDir,
      "--extensions-dir",
      env.extensionsDir,
      "--disable-telemetry",
      "--disable-update-check",
      "--disable-workspace-trust",
      "--disable-getting-started-override",
      // Our own (empty) config file: never the user's ~/.config/code-server/config.yaml.
      "--config",
      path.join(env.userDataDir, "code-server-config.yaml"),
      env.workspace,
    ],
    {
      detached: true,
      stdio: ["ignore", logFile, logFile],
      // An empty gallery: the workbench then never reaches out for extensions.
      env: { ...process.env, EXTENSIONS_GALLERY: '{"serviceUrl":""}' },
    },
  );
  fs.closeSync(logFile);
  return { url: `http://127.0.0.1:${port}/?folder=${encodeURIComponent(env.workspace)}`, process: child };
}

async function waitForHealthz(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`code-server exited with ${child.exitCode}; see code-server.log`);
    }
    try {
      const response = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (response.ok) {
        return;
      }
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`code-server did not answer /healthz within ${timeoutMs} ms`);
}

/** SIGTERM to the whole group, SIGKILL if it is still there after 5 s. */
async function stopCodeServer(child: ChildProcess): Promise<void> {
  if (child.pid === undefined) {
    return;
  }
  const group = -child.pid;
  const alive = () => {
    try {
      process.kill(group, 0);
      return true;
    } catch {
      return false;
    }
  };
  try {
    process.kill(group, "SIGTERM");
  } catch {
    return;
  }
  const deadline = Date.now() + 5000;
  while (alive() && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  if (alive()) {
    process.kill(group, "SIGKILL");
  }
}

// ---------------------------------------------------------------------------------------------------
// the workbench

const filePath = () => path.join(env.workspace, env.file);
const readFile = () => fs.readFileSync(filePath(), "utf8");
/** Monaco renders spaces in ghost text as no-break spaces. */
const normalize = (text: string) => text.replace(/\u00a0/g, " ");

async function shot(page: Page, name: string): Promise<string> {
  const file = path.join(env.artifacts, `${name}.png`);
  await page.screenshot({ path: file });
  log(`screenshot ${file}`);
  return file;
}

function statusItem(page: Page): Locator {
  // The item's accessible label starts with "Waferline: <state>" (src/status.ts).
  return page.locator('[aria-label^="Waferline: "]').first();
}

async function runCommand(page: Page, title: string): Promise<void> {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: TIMEOUT_UI_MS });
  await input.fill(`>${title}`);
  await page
    .locator(".quick-input-list .monaco-list-row", { hasText: title })
    .first()
    .waitFor({ timeout: TIMEOUT_UI_MS });
  await page.keyboard.press("Enter");
}

async function openFile(page: Page, name: string): Promise<Locator> {
  await page.keyboard.press("Control+P");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: TIMEOUT_UI_MS });
  await input.fill(name);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: name }).first().waitFor({ timeout: TIMEOUT_UI_MS });
  await page.keyboard.press("Enter");
  const editor = page.locator(".editor-instance .monaco-editor").first();
  await editor.waitFor({ state: "visible", timeout: TIMEOUT_UI_MS });
  await page.locator(".tab.active", { hasText: name }).waitFor({ timeout: TIMEOUT_UI_MS });
  return editor;
}

/** Waits for the editor to hold unsaved changes, saves with Ctrl+S, waits for the file on disk to change. */
async function saveAndRead(page: Page, before: string): Promise<string> {
  // An edit from the server (a resolved code action) lands some time after the click; saving before
  // that would save nothing, so wait for the tab's dirty mark first.
  await page.locator(".tab.active.dirty").waitFor({ timeout: TIMEOUT_ACTION_MS });
  await page.keyboard.press("Control+S");
  const deadline = Date.now() + TIMEOUT_UI_MS;
  while (Date.now() < deadline) {
    const now = readFile();
    if (now !== before) {
      return now;
    }
    await page.waitForTimeout(100);
  }
  throw new Error("the file on disk did not change after Ctrl+S");
}

async function ghostText(page: Page): Promise<string> {
  // Same-line ghost text is an injected decoration (split into spans by syntax colouring); further
  // lines are a view zone of class ghost-text, one .view-line each.
  const sameLine = (await page.locator(".ghost-text-decoration").allTextContents()).join("");
  const below = await page.locator(".ghost-text .view-line").allTextContents();
  return normalize([sameLine, ...below].join("\n"));
}

// ---------------------------------------------------------------------------------------------------
// checks

interface Summary {
  checks: { name: string; ok: boolean; detail: string; ms: number }[];
  activation?: string;
  fileOpenToReadyMs?: number;
  screenshots: string[];
}

const summary: Summary = { checks: [], screenshots: [] };

async function check(name: string, body: () => Promise<string>): Promise<void> {
  const start = Date.now();
  try {
    const detail = await body();
    summary.checks.push({ name, ok: true, detail, ms: Date.now() - start });
    log(`PASS ${name}: ${detail}`);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    summary.checks.push({ name, ok: false, detail, ms: Date.now() - start });
    log(`FAIL ${name}: ${detail}`);
    throw err;
  }
}

/** Do what a person does to make `target` appear (`ask(again)`), again while it does not within `eachMs`: VS Code
 * sometimes cancels a code-action request after the server's answer is in the log and shows nothing. Returns how
 * many times it took, for the check's detail. */
async function askUntilVisible(target: Locator, timeoutMs: number, eachMs: number,
                               ask: (again: boolean) => Promise<void>, what: string): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let times = 0;
  while (!(await target.isVisible())) {
    if (Date.now() > deadline) {
      throw new Error(`${what} (asked ${times} times)`);
    }
    await ask(times > 0);
    times += 1;
    await target.waitFor({ state: "visible", timeout: eachMs }).catch(() => undefined);
  }
  return times;
}

async function waitForGhostText(page: Page, timeoutMs: number): Promise<string> {
  // Ask again (Alt+\ = editor.action.inlineSuggest.trigger) whenever a request came back empty, so a
  // first answer that was still waiting on the model does not end the test.
  const deadline = Date.now() + timeoutMs;
  const ghost = page.locator(".ghost-text-decoration, .ghost-text").first();
  while (Date.now() < deadline) {
    try {
      await ghost.waitFor({ state: "visible", timeout: Math.min(10_000, Math.max(1, deadline - Date.now())) });
      const text = await ghostText(page);
      if (text.trim().length > 0) {
        return text;
      }
    } catch {
      // no ghost text yet
    }
    await page.keyboard.press("Alt+Backslash");
  }
  throw new Error(`no ghost text within ${timeoutMs} ms`);
}

/** The extension's output channel as VS Code writes it to <user-data-dir>/logs/.../Waferline.log. */
function extensionLogFiles(): string[] {
  const logsDir = path.join(env.userDataDir, "logs");
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }) : []) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        walk(full);
      } else if (/waferline/i.test(entry.name) && entry.name.endsWith(".log")) {
        found.push(full);
      }
    }
  };
  walk(logsDir);
  return found;
}

function extensionLogText(): string {
  return extensionLogFiles()
    .map((f) => fs.readFileSync(f, "utf8"))
    .join("\n");
}

async function findActivationLine(): Promise<string | undefined> {
  let line: string | undefined;
  for (const file of extensionLogFiles()) {
    fs.copyFileSync(file, path.join(env.artifacts, `extension-${path.basename(file)}`));
    line ??= fs
      .readFileSync(file, "utf8")
      .split("\n")
      .find((l) => l.includes("Activated in"));
  }
  return line?.trim();
}

async function run(browser: Browser, url: string): Promise<void> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("pageerror", (err) => log(`page error: ${err.message}`));

  await check("workbench loads", async () => {
    await page.goto(url);
    await page.locator(".monaco-workbench").waitFor({ timeout: TIMEOUT_WORKBENCH_MS });
    await page.locator(".explorer-folders-view, .explorer-viewlet").first().waitFor({ timeout: TIMEOUT_WORKBENCH_MS });
    return "monaco-workbench and explorer visible";
  });
  summary.screenshots.push(await shot(page, "01-workbench"));

  let editor: Locator | undefined;
  await check("extension activates and the model loads", async () => {
    const start = Date.now();
    editor = await openFile(page, env.file);
    const item = statusItem(page);
    await item.waitFor({ state: "visible", timeout: TIMEOUT_UI_MS });
    const activatedAfterMs = Date.now() - start;
    await page.locator('[aria-label^="Waferline: ready"]').first().waitFor({ timeout: TIMEOUT_READY_MS });
    summary.fileOpenToReadyMs = Date.now() - start;
    summary.activation = await findActivationLine();
    return (
      `status item after ${activatedAfterMs} ms, "ready" after ${summary.fileOpenToReadyMs} ms; ` +
      `extension log: ${summary.activation ?? "(no activation line found)"}`
    );
  });
  summary.screenshots.push(await shot(page, "02-ready"));

  await check("ghost text appears and Tab accepts it", async () => {
    const before = readFile();
    await editor!.click();
    await page.keyboard.press("Control+End");
    // A new function, typed key by key like a person; the model completes its body line.
    await page.keyboard.type("def multiply(a, b):", { delay: 20 });
    await page.keyboard.press("Enter");
    await page.keyboard.type("return ", { delay: 20 });
    const ghost = await waitForGhostText(page, TIMEOUT_GHOST_MS);
    summary.screenshots.push(await shot(page, "03-ghost-text"));
    await page.keyboard.press("Tab");
    await page.locator(".ghost-text-decoration").first().waitFor({ state: "detached", timeout: TIMEOUT_UI_MS });
    summary.screenshots.push(await shot(page, "04-accepted"));
    const after = await saveAndRead(page, before);
    const firstLine = ghost.split("\n")[0];
    if (!after.includes(`return ${firstLine}`)) {
      throw new Error(`saved file lacks "return ${firstLine}":\n${after}`);
    }
    const wanted = ghost.replace(/\s+/g, " ").trim();
    if (!after.replace(/\s+/g, " ").includes(wanted)) {
      throw new Error(`saved file lacks the whole suggestion ${JSON.stringify(ghost)}:\n${after}`);
    }
    // The server's waferline/metrics notification reached the status bar.
    const speed = page.locator('[aria-label^="Waferline: ready, CPU "]').first();
    await speed.waitFor({ timeout: TIMEOUT_UI_MS });
    return `accepted ${JSON.stringify(ghost)}; status bar: "${await speed.getAttribute("aria-label")}"`;
  });

  await check('code action "Complete here" edits the document', async () => {
    await page.keyboard.press("Escape");
    await page.keyboard.press("Control+End");
    await page.keyboard.press("Enter");
    await page.keyboard.press("Enter");
    // Indentation is whatever Python's on-enter rules gave; the check below does not depend on it.
    await page.keyboard.type("result = ", { delay: 20 });
    // Let the inline suggestion for this position arrive first, then dismiss it: the action must do the work,
    // and a suggestion landing while the menu opens would race with it.
    await waitForGhostText(page, TIMEOUT_GHOST_MS);
    await page.keyboard.press("Escape");
    await page.locator(".ghost-text-decoration").first().waitFor({ state: "detached", timeout: TIMEOUT_UI_MS });
    const before = await saveAndRead(page, readFile());
    const menu = page.locator(".action-widget");
    const entry = menu.locator(".monaco-list-row", { hasText: "Complete here" }).first();
    // About one run in three here, Ctrl+. showed no menu although the server's answer to the code-action request
    // is in the log (cause inside VS Code not found): ask again as a person would, and say how many presses it took.
    const attempts = await askUntilVisible(entry, TIMEOUT_ACTION_MS, 10_000, async (again) => {
      if (again) {
        await page.keyboard.press("Escape");
      }
      await page.keyboard.press("Control+Period");
    }, 'no "Complete here" in the code-action menu after Ctrl+.');
    summary.screenshots.push(await shot(page, "05-code-action-menu"));
    await entry.click();
    await page.keyboard.press("Escape");
    const after = await saveAndRead(page, before);
    summary.screenshots.push(await shot(page, "06-code-action-applied"));
    const cut = before.lastIndexOf("result = ") + "result = ".length;
    if (!after.startsWith(before.slice(0, cut)) || !after.endsWith(before.slice(cut)) || after.length <= before.length) {
      throw new Error(`expected text inserted after "result = ":\nbefore:\n${before}\nafter:\n${after}`);
    }
    const inserted = after.slice(cut, after.length - (before.length - cut));
    return `inserted ${JSON.stringify(inserted)} (menu after ${attempts} Ctrl+. press${attempts > 1 ? "es" : ""})`;
  });

  await check("lightbulb on a selection, none at the end of a finished line", async () => {
    // VS Code asks for code actions by itself whenever the cursor moves and shows a lightbulb for any answer; the
    // server answers those only where an action helps. The lightbulb is a content widget, or a glyph-margin
    // decoration when the line leaves it no room.
    const bulb = page
      .locator('.monaco-editor .lightBulbWidget, .monaco-editor [class*="codicon-gutter-lightbulb"]')
      .filter({ visible: true })
      .first();
    // The server's answers are in the extension log (logLevel debug: pygls logs each one it sends).
    const answers = (pattern: RegExp) => (extensionLogText().match(pattern) ?? []).length;
    const selectionAnswer = /Sending data: .*Replace selection with a completion/g;
    const nullAnswer = /Sending data: \{"id": \d+, "jsonrpc": "2\.0", "result": null\}/g;
    const waitForMore = async (pattern: RegExp, than: number, what: string) => {
      const deadline = Date.now() + TIMEOUT_UI_MS;
      while (answers(pattern) <= than) {
        if (Date.now() > deadline) {
          throw new Error(`${what} within ${TIMEOUT_UI_MS} ms`);
        }
        await page.waitForTimeout(100);
      }
    };
    await page.keyboard.press("Escape");
    // Line 3 of main.py, `    return a + b`: a finished statement.
    await page.keyboard.press("Control+Home");
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("End");
    const selections = answers(selectionAnswer);
    // As with Ctrl+. above, VS Code sometimes drops an answered code-action request (it cancels it after the answer
    // is in the log) and shows nothing: select again, as a person would, and say how many selections it took.
    const tries = await askUntilVisible(bulb, TIMEOUT_UI_MS, 5_000, async (again) => {
      if (again) {
        await page.keyboard.press("End");
      }
      await page.keyboard.press("Shift+Home");
    }, "no lightbulb on the selection of line 3");
    summary.screenshots.push(await shot(page, "07-lightbulb-on-selection"));
    // Every answer before the selection's is in the log once the selection's is (one stderr, in order).
    await waitForMore(selectionAnswer, selections, "the server's answer for the selection is not in the log");
    const nulls = answers(nullAnswer);
    await page.keyboard.press("End");
    await waitForMore(nullAnswer, nulls, "no empty answer to a code-action request at the end of the line");
    await bulb.waitFor({ state: "hidden", timeout: TIMEOUT_UI_MS });
    summary.screenshots.push(await shot(page, "08-no-lightbulb"));
    return `lightbulb shown for the selection of line 3 (after ${tries} selection${tries > 1 ? "s" : ""}); hidden at its end after the server answered nothing`;
  });

  await check("commands: disable, enable, restart server", async () => {
    const waitForState = (state: string) =>
      page.locator(`[aria-label^="Waferline: ${state}"]`).first().waitFor({ timeout: TIMEOUT_READY_MS });
    await runCommand(page, "Waferline: Disable Completions");
    await waitForState("disabled");
    summary.screenshots.push(await shot(page, "09-disabled"));
    await runCommand(page, "Waferline: Enable Completions");
    await waitForState("ready");
    const starts = () => (extensionLogText().match(/Starting the server: /g) ?? []).length;
    const startsBefore = starts();
    await runCommand(page, "Waferline: Restart Server");
    // The restart can be quicker than a screenshot, so the proof is a new server start in the log.
    const deadline = Date.now() + TIMEOUT_READY_MS;
    while (starts() === startsBefore && Date.now() < deadline) {
      await page.waitForTimeout(100);
    }
    if (starts() === startsBefore) {
      throw new Error("no new server start in the extension log after Restart Server");
    }
    await waitForState("ready");
    return `status went disabled -> ready; restart started server #${starts()} and reached ready`;
  });

  await check("wafer report webview shows the heat-map", async () => {
    await runCommand(page, "Waferline: Show Wafer Report");
    // Either the panel opens or the extension reports why not; fail at once on the latter.
    const tab = page.locator(".tab", { hasText: "Wafer report" }).first();
    const failure = page.locator(".notification-toast", { hasText: "could not simulate" }).first();
    await tab.or(failure).waitFor({ timeout: TIMEOUT_ACTION_MS });
    if (await failure.isVisible()) {
      summary.screenshots.push(await shot(page, "10-wafer-report-error"));
      throw new Error(`the extension showed: ${normalize((await failure.innerText()).replace(/\s+/g, " "))}`);
    }
    // The webview is an iframe holding another iframe with our HTML.
    const frame = page.frameLocator("iframe.webview.ready").frameLocator("iframe#active-frame");
    const loaded = async (selector: string): Promise<string> => {
      const img = frame.locator(selector);
      await img.waitFor({ state: "visible", timeout: TIMEOUT_ACTION_MS });
      await img.evaluate(
        (el: HTMLImageElement) =>
          el.complete && el.naturalWidth > 0
            ? undefined
            : new Promise((resolve, reject) => {
                el.addEventListener("load", resolve, { once: true });
                el.addEventListener("error", () => reject(new Error("image failed to load")), { once: true });
              }),
      );
      return img.evaluate((el: HTMLImageElement) => `${el.naturalWidth}x${el.naturalHeight}`);
    };
    const size = await loaded("img.plot");
    const chart = await loaded("img.explore"); // which public models reach 1,000 tok/s on this hardware
    const tables = await frame.locator("table").count();
    summary.screenshots.push(await shot(page, "10-wafer-report"));
    return `plot ${size} px, explore chart ${chart} px, ${tables} tables`;
  });

  await page.close();
}

async function main(): Promise<number> {
  fs.mkdirSync(env.artifacts, { recursive: true });
  const port = await freePort();
  const server = startCodeServer(port);
  let browser: Browser | undefined;
  const stopAll = async () => {
    await browser?.close().catch(() => undefined);
    await stopCodeServer(server.process);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => void stopAll().finally(() => process.exit(130)));
  }
  let failed = false;
  try {
    await waitForHealthz(port, server.process, TIMEOUT_WORKBENCH_MS);
    log(`code-server ready on port ${port}`);
    browser = await chromium.launch({
      executablePath: env.chromium,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    await run(browser, server.url);
    await findActivationLine(); // copies the extension's final log into the artifacts
  } catch (err) {
    failed = true;
    log(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    const pages = browser?.contexts().flatMap((c) => c.pages()) ?? [];
    for (const page of pages) {
      await shot(page, "failure").then((f) => summary.screenshots.push(f)).catch(() => undefined);
    }
    await findActivationLine().catch(() => undefined);
  } finally {
    await stopAll();
  }
  fs.writeFileSync(path.join(env.artifacts, "summary.json"), JSON.stringify(summary, null, 2));
  const passed = summary.checks.filter((c) => c.ok).length;
  const failedChecks = summary.checks.length - passed;
  if (summary.activation) {
    log(`activation: ${summary.activation}`);
  }
  console.log(`e2e: ${passed} passed, ${failedChecks + (failed && failedChecks === 0 ? 1 : 0)} failed`);
  return failed || failedChecks > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
