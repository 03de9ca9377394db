// The only module besides extension.ts, server.ts and report.ts that touches the `vscode` API: one
// function per call we make, so the rest reads as plain TypeScript and a test can stub this file.
import * as vscode from "vscode";
import { SECTION } from "./settings";

export function getConfiguration(scope?: vscode.ConfigurationScope): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(SECTION, scope);
}

export function onDidChangeConfiguration(
  handler: (e: vscode.ConfigurationChangeEvent) => unknown,
): vscode.Disposable {
  return vscode.workspace.onDidChangeConfiguration(handler);
}

export function firstWorkspaceFolder(): string | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

export function createLogOutputChannel(name: string): vscode.LogOutputChannel {
  return vscode.window.createOutputChannel(name, { log: true });
}

export function createStatusBarItem(id: string, priority: number): vscode.StatusBarItem {
  return vscode.window.createStatusBarItem(id, vscode.StatusBarAlignment.Right, priority);
}

export function errorBackground(): vscode.ThemeColor {
  return new vscode.ThemeColor("statusBarItem.errorBackground");
}

export function registerCommand(command: string, callback: (...args: unknown[]) => unknown): vscode.Disposable {
  return vscode.commands.registerCommand(command, callback);
}

export function showErrorMessage(message: string, ...items: string[]): Thenable<string | undefined> {
  return vscode.window.showErrorMessage(message, ...items);
}

export function showInformationMessage(message: string): Thenable<string | undefined> {
  return vscode.window.showInformationMessage(message);
}

export function openSettings(query: string): Thenable<unknown> {
  return vscode.commands.executeCommand("workbench.action.openSettings", query);
}

export function withNotificationProgress<T>(title: string, task: () => Promise<T>): Thenable<T> {
  return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title }, task);
}

/** Writes `enabled` where it takes effect: the workspace if the workspace sets it, else the user settings. */
export async function setEnabled(enabled: boolean): Promise<void> {
  const config = getConfiguration();
  const target =
    config.inspect<boolean>("enabled")?.workspaceValue !== undefined
      ? vscode.ConfigurationTarget.Workspace
      : vscode.ConfigurationTarget.Global;
  await config.update("enabled", enabled, target);
}
