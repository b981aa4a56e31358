import { execFile } from 'node:child_process'

export interface CurlResult {
  readonly status: number
  readonly body: string
  /** curl's `-w '%{json}'` write-out: size_upload, num_connects, time_total… */
  readonly info: Record<string, unknown>
}

/**
 * Runs the real curl (installed by .ci/run) with `args` and returns the final status, the
 * body and curl's own account of the transfer. curl failing to run at all rejects.
 */
export function curl(args: string[]): Promise<CurlResult> {
  const marker = '\n--curl-info--\n'
  return new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '-w', `${marker}%{json}`, ...args], { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const at = stdout.lastIndexOf(marker)
      if (at < 0) {
        reject(new Error(`curl ${args.join(' ')} failed: ${err?.message ?? ''} ${stderr}`))
        return
      }
      const info = JSON.parse(stdout.slice(at + marker.length)) as Record<string, unknown>
      resolve({ status: Number(info.http_code), body: stdout.slice(0, at), info })
    })
  })
}
