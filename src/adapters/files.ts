import { randomBytes } from 'node:crypto'
import { open, readFile, rename, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

/** Files Ficus keeps (state, audit log, Unleash backup): read when present, replaced atomically. */

/** The file's text, or undefined when it does not exist (a first start); any other failure throws. */
export async function readIfPresent(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** Replaces `file` with `text` (mode 0600) so a reader sees the old or the new content, never a part. */
export async function writeFileAtomic(file: string, text: string, onDirSyncError?: (err: unknown) => void): Promise<void> {
  const dir = dirname(file)
  const tmp = join(dir, `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`)
  try {
    const fh = await open(tmp, 'wx', 0o600)
    try {
      await fh.writeFile(text)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, file)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
  // From here the new state is in place: a failure to sync the directory (some network
  // file systems refuse it) is reported to the caller's log, not as "nothing changed".
  try {
    const d = await open(dir, 'r')
    try {
      await d.sync()
    } finally {
      await d.close()
    }
  } catch (err) {
    onDirSyncError?.(err)
  }
}
