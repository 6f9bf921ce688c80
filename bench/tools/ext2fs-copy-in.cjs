'use strict';
// Copies a host directory tree into an existing ext2/3/4 image through the `ext2fs` npm package
// (libext2fs compiled to WASM), the way a user of that package would. It is not a dependency of
// this project: run with NODE_PATH pointing at a node_modules that holds it (see
// bench/workloads/ext2fs-probe.ts). usage: node ext2fs-copy-in.cjs IMAGE HOSTDIR
const fsp = require('node:fs/promises');
const path = require('node:path');
const { mount, umount } = require('ext2fs');

const CHUNK = 1 << 20;

/** The disk object ext2fs wants: read/write(buffer, bufferOffset, length, fileOffset), discard, flush. */
class FileDisk {
  constructor(fh) {
    this.fh = fh;
  }
  async read(buffer, bufferOffset, length, fileOffset) {
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buffer, bufferOffset + done, length - done, fileOffset + done);
      if (bytesRead === 0) {
        buffer.fill(0, bufferOffset + done, bufferOffset + length);
        break;
      }
      done += bytesRead;
    }
    return { bytesRead: length, buffer };
  }
  async write(buffer, bufferOffset, length, fileOffset) {
    let done = 0;
    while (done < length) {
      const { bytesWritten } = await this.fh.write(buffer, bufferOffset + done, length - done, fileOffset + done);
      done += bytesWritten;
    }
    return { bytesWritten: length, buffer };
  }
  async discard() {}
  async flush() {
    await this.fh.datasync();
  }
}

async function main() {
  const [image, hostDir] = process.argv.slice(2);
  if (!image || !hostDir) {
    process.stderr.write('usage: ext2fs-copy-in.cjs IMAGE HOSTDIR\n');
    process.exit(2);
  }
  const fh = await fsp.open(image, 'r+');
  const e = await mount(new FileDisk(fh), 0);
  const fs = e.promises;
  const firstName = new Map(); // host "dev:ino" → path in the image, for hard links
  const buf = Buffer.allocUnsafe(CHUNK);

  async function copyFile(src, dst, st) {
    const out = await fs.open(dst, 'w', st.mode & 0o7777);
    const inp = await fsp.open(src, 'r');
    try {
      for (let pos = 0; pos < st.size; ) {
        const { bytesRead } = await inp.read(buf, 0, Math.min(CHUNK, st.size - pos), pos);
        if (bytesRead === 0) break;
        // ext2fs's write() ignores its offset argument: always pass a buffer that starts at 0.
        await out.write(bytesRead === CHUNK ? buf : buf.subarray(0, bytesRead), 0, bytesRead, pos);
        pos += bytesRead;
      }
    } finally {
      await inp.close();
      await out.close();
    }
  }

  async function walk(src, dst) {
    for (const name of (await fsp.readdir(src)).sort()) {
      const s = path.join(src, name);
      const d = dst === '/' ? `/${name}` : `${dst}/${name}`;
      const st = await fsp.lstat(s);
      if (st.isDirectory()) {
        if (dst === '/' && name === 'lost+found') continue;
        await fs.mkdir(d, st.mode & 0o7777);
        await walk(s, d);
      } else if (st.isSymbolicLink()) {
        await fs.symlink(await fsp.readlink(s), d);
        continue; // lchown opens the link O_WRONLY|O_NOFOLLOW, which fails: owners of links stay 0
      } else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        if (st.nlink > 1 && firstName.has(key)) {
          await fs.link(firstName.get(key), d);
          continue;
        }
        if (st.nlink > 1) firstName.set(key, d);
        await copyFile(s, d, st);
      } else {
        throw new Error(`${s}: device nodes, FIFOs and sockets cannot be made through ext2fs (no mknod)`);
      }
      if (st.uid !== 0 || st.gid !== 0) await fs.chown(d, st.uid, st.gid);
      // Times cannot be set: utimes/futimes throw "not yet implemented" in ext2fs 4.x.
    }
  }

  try {
    await walk(hostDir, '/');
  } finally {
    await umount(e);
    await fh.close();
  }
}

main().catch((err) => {
  process.stderr.write(`ext2fs-copy-in: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
