import { readdir, readFile, readlink } from 'node:fs/promises'

/**
 * What the kernel says of a TCP connection on 127.0.0.1 (Linux, /proc/net/tcp): how many
 * bytes wait in each direction, and which process holds the socket. A test uses it to know
 * that a process has read what was sent to it, or which process opened a connection, from
 * the kernel itself rather than from a sleep or from the process's own account.
 */

export interface TcpSocket {
  readonly localPort: number
  readonly remotePort: number
  /** Bytes sent and not yet acknowledged by the peer. */
  readonly txQueue: number
  /** Bytes received and not yet read by the process. */
  readonly rxQueue: number
  readonly inode: number
}

/** The IPv4 sockets of this network namespace with both ends on 127.0.0.1. */
export async function loopbackSockets(): Promise<TcpSocket[]> {
  const text = await readFile('/proc/net/tcp', 'utf8')
  const out: TcpSocket[] = []
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 10) continue
    const [localAddr, localPort] = (f[1] as string).split(':') as [string, string]
    const [remoteAddr, remotePort] = (f[2] as string).split(':') as [string, string]
    if (localAddr !== '0100007F' || remoteAddr !== '0100007F') continue
    const [tx, rx] = (f[4] as string).split(':') as [string, string]
    out.push({ localPort: parseInt(localPort, 16), remotePort: parseInt(remotePort, 16), txQueue: parseInt(tx, 16), rxQueue: parseInt(rx, 16), inode: Number(f[9]) })
  }
  return out
}

/** The socket whose local port is `localPort` and whose peer's is `remotePort` (undefined: no such connection, or closed). */
export async function socketBetween(localPort: number, remotePort: number): Promise<TcpSocket | undefined> {
  return (await loopbackSockets()).find((s) => s.localPort === localPort && s.remotePort === remotePort)
}

/**
 * Whether everything one end sent on a loopback connection has been read by the other:
 * the sender's bytes are all acknowledged (they reached the reader's socket) and the
 * reader's socket has none left unread. False while either is not so, or the connection is gone.
 */
export async function drained(senderPort: number, readerPort: number): Promise<boolean> {
  const [sender, reader] = await Promise.all([socketBetween(senderPort, readerPort), socketBetween(readerPort, senderPort)])
  return sender !== undefined && reader !== undefined && sender.txQueue === 0 && reader.rxQueue === 0
}

/** Which of `pids` has the socket `inode` open (undefined: none of them). */
export async function ownerOf(inode: number, pids: readonly number[]): Promise<number | undefined> {
  for (const pid of pids) {
    const dir = `/proc/${pid}/fd`
    const fds = await readdir(dir).catch(() => [] as string[])
    for (const fd of fds) {
      const target = await readlink(`${dir}/${fd}`).catch(() => '')
      if (target === `socket:[${inode}]`) return pid
    }
  }
  return undefined
}
