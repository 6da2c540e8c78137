/** The child processes a benchmark starts: tracked, so that every exit path can end them. */
import type { Subprocess } from "bun";

/** Processes started and not yet exited. */
export const live = new Set<Subprocess>();

/** Tracks a process until it exits. */
export function track<P extends Subprocess>(proc: P): P {
  live.add(proc);
  void proc.exited.then(() => live.delete(proc));
  return proc;
}

/** SIGTERM, then SIGKILL after 3 s; resolves once the process has exited. */
export async function stopProcess(proc: Subprocess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const killed = setTimeout(() => proc.kill("SIGKILL"), 3000);
  await proc.exited;
  clearTimeout(killed);
}

/** Kills every tracked process at once (exit handlers cannot wait). */
export function killAll(): void {
  for (const p of live) p.kill("SIGKILL");
  live.clear();
}

/** Reads the first line a process prints on stdout (SIGKILL after 15 s of silence). */
export async function firstLine(proc: Subprocess<"ignore", "pipe" | "ignore", "inherit">, what: string): Promise<string> {
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = "";
  const timeout = setTimeout(() => proc.kill("SIGKILL"), 15_000);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`${what} exited before printing its port`);
      text += decoder.decode(value, { stream: true });
      const nl = text.indexOf("\n");
      if (nl >= 0) return text.slice(0, nl);
    }
  } finally {
    clearTimeout(timeout);
    reader.releaseLock();
  }
}

/**
 * Runs a benchmark's main(): `cleanup` (which must not wait) runs on exit, SIGINT and SIGTERM;
 * tracked processes are stopped when main ends, and an error becomes one line and exit code 1.
 */
export async function runBench(main: () => Promise<void>, cleanup: () => void = killAll): Promise<void> {
  process.on("exit", cleanup);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      cleanup();
      process.exit(130);
    });
  }
  try {
    await main();
  } catch (e) {
    console.error(`bench failed: ${(e as Error)?.stack ?? e}`);
    process.exitCode = 1;
  } finally {
    for (const p of [...live]) await stopProcess(p);
    cleanup();
  }
}
