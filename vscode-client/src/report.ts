// The "Waferline: Show Wafer Report" webview: asks the server for `waferline/simulate` on the configured
// hardware and shows the heat-map PNG with the latency breakdown. One panel, reused and refreshed.
import * as path from "path";
import * as vscode from "vscode";
import { renderReportHtml } from "./reportHtml";
import { ServerController } from "./server";
import { errorMessage } from "./util";
import * as api from "./vscodeapi";

export class WaferReport implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;

  constructor(private readonly server: ServerController) {}

  async show(): Promise<void> {
    const hardware = this.server.current.server.hardware;
    try {
      const result = await api.withNotificationProgress(`Waferline: simulating on ${hardware}…`, () =>
        this.server.simulate(hardware),
      );
      const plotDir = result.plot_path ? path.dirname(result.plot_path) : undefined;
      const panel = this.ensurePanel(plotDir);
      panel.title = `Wafer report (${hardware})`;
      panel.webview.html = renderReportHtml({
        title: `Wafer report — ${hardware}`,
        result,
        plotUri: result.plot_path
          ? panel.webview.asWebviewUri(vscode.Uri.file(result.plot_path)).toString()
          : undefined,
        // drawn into the same private folder as the plot, so the panel's one resource root covers it
        exploreUri:
          result.explore_plot_path && result.plot_path && path.dirname(result.explore_plot_path) === plotDir
            ? panel.webview.asWebviewUri(vscode.Uri.file(result.explore_plot_path)).toString()
            : undefined,
        cspSource: panel.webview.cspSource,
      });
      panel.reveal(undefined, true);
    } catch (err) {
      void api.showErrorMessage(`Waferline: could not simulate the wafer: ${errorMessage(err)}`);
    }
  }

  dispose(): void {
    this.panel?.dispose();
  }

  /** Webview options are fixed at creation, so a plot in a new folder needs a new panel. */
  private ensurePanel(plotDir: string | undefined): vscode.WebviewPanel {
    const roots = plotDir ? [vscode.Uri.file(plotDir)] : [];
    const sameRoots =
      this.panel !== undefined &&
      JSON.stringify(this.panel.webview.options.localResourceRoots?.map((u) => u.fsPath) ?? []) ===
        JSON.stringify(roots.map((u) => u.fsPath));
    if (this.panel && sameRoots) {
      return this.panel;
    }
    this.panel?.dispose();
    const panel = vscode.window.createWebviewPanel(
      "waferline.report",
      "Wafer report",
      { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true },
      { enableScripts: false, localResourceRoots: roots },
    );
    panel.onDidDispose(() => {
      if (this.panel === panel) {
        this.panel = undefined;
      }
    });
    this.panel = panel;
    return panel;
  }
}
