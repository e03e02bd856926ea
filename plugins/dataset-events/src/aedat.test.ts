import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRng } from '@spikeflow/core';
import { eventsOf, type Events } from '@spikeflow/events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DVS128_SENSOR,
  encodeAedat31,
  indexAedat,
  nodeFiles,
  packetsOverlapping,
  polarityPackets,
  readAedatHeader,
  readAedatInterval,
  scanAedat,
  type AedatPacket,
  type RandomAccessFile,
} from './index.js';
import { refusal } from './test-util.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'spikeflow-aedat-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A file in memory that records every read. */
function memFile(bytes: Uint8Array, path = '/data/user01_led.aedat'): RandomAccessFile & { reads: [number, number][] } {
  const reads: [number, number][] = [];
  return {
    path,
    size: bytes.length,
    reads,
    read: async (position, length) => {
      const b = bytes.slice(position, Math.min(bytes.length, position + length));
      reads.push([position, b.length]);
      return b;
    },
    close: async () => {},
  };
}

const text = (s: string) => new TextEncoder().encode(s);
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const headerOf = (bytes: Uint8Array) => {
  const end = new TextDecoder('latin1').decode(bytes).indexOf('#!END-HEADER\r\n') + '#!END-HEADER\r\n'.length;
  return { head: bytes.subarray(0, end), body: bytes.subarray(end) };
};

/** `n` events in time order over [t0, t0 + span) s (whole µs) on the DVS128. */
function stream(seed: number, n: number, t0: number, span: number): Events {
  const r = createRng(seed);
  const t = Array.from({ length: n }, () => Math.round((t0 + r() * span) * 1e6) / 1e6).sort((a, b) => a - b);
  return eventsOf(
    t,
    t.map(() => Math.floor(r() * 128)),
    t.map(() => Math.floor(r() * 128)),
    t.map(() => (r() < 0.5 ? 0 : 1)),
  );
}

describe('AEDAT 3.1 encoding', () => {
  it('writes the CRLF header, then 28-byte little-endian packet headers and 8-byte polarity events', () => {
    const b = encodeAedat31([{ events: eventsOf([0.000123], [5], [7], [1]) }]);
    const { head, body } = headerOf(b);
    expect(new TextDecoder().decode(head)).toBe(
      '#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#Start-Time: 2017-01-01 00:00:00 (TZ+0000)\r\n#!END-HEADER\r\n',
    );
    const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
    expect(body.length).toBe(28 + 8);
    // eventType 1, eventSource 1, eventSize 8, eventTSOffset 4, eventTSOverflow 0, capacity, number, valid = 1
    expect([v.getInt16(0, true), v.getInt16(2, true), ...[4, 8, 12, 16, 20, 24].map((o) => v.getInt32(o, true))]).toEqual([1, 1, 8, 4, 0, 1, 1, 1]);
    // data: x in bits 17–31, y in bits 2–16, polarity bit 1, valid bit 0
    expect(v.getUint32(28, true)).toBe(5 * 2 ** 17 + 7 * 4 + 2 + 1);
    expect(v.getInt32(32, true)).toBe(123);
  });

  it('puts times past 2³¹ µs into eventTSOverflow, and clears the valid bit of invalid events', () => {
    const t = (2 ** 31 + 10) / 1e6;
    const { body } = headerOf(encodeAedat31([{ events: eventsOf([t, t], [127, 0], [127, 0], [0, 0]), valid: [true, false] }]));
    const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
    expect(v.getInt32(12, true)).toBe(1);
    expect(v.getInt32(24, true)).toBe(1); // eventValid
    expect(v.getInt32(32, true)).toBe(10);
    expect(v.getUint32(28, true)).toBe(127 * 2 ** 17 + 127 * 4 + 1);
    expect(v.getUint32(36, true) & 1).toBe(0);
  });

  it('refuses what the format cannot hold', async () => {
    await refusal(() => encodeAedat31([{ events: eventsOf([0], [0x8000]) }]), 'CONFIG_INVALID');
    await refusal(() => encodeAedat31([{ events: eventsOf([0], [0], [0], [3]) }]), 'CONFIG_INVALID');
    await refusal(() => encodeAedat31([{ events: eventsOf([0, 3000], [0, 0]), tsOverflow: 0 }]), 'CONFIG_INVALID');
    await refusal(() => encodeAedat31([], { headerLines: ['no hash'] }), 'CONFIG_INVALID');
    await refusal(() => encodeAedat31([{ eventType: 0, eventSize: 8, count: 2, data: new Uint8Array(3) }]), 'CONFIG_INVALID');
  });
});

describe('AEDAT 3.1 reading', () => {
  it('indexes polarity packets with positioned reads of headers and first/last events only', async () => {
    const ev = stream(1, 100, 5, 2);
    const packets: AedatPacket[] = [];
    polarityPackets(ev, 7).forEach((p, k) => {
      packets.push(p);
      if (k % 3 === 0) packets.push({ eventType: 0, eventSize: 8, count: 3 }); // special events, skipped
      if (k === 4) packets.push({ events: eventsOf([], []) }); // an empty polarity packet
    });
    const bytes = encodeAedat31(packets, {
      headerLines: Array.from({ length: 300 }, (_, i) => `#Note ${i}: a long header line that needs more than one read`),
    });
    const f = memFile(bytes);
    const index = await indexAedat(f);
    expect(index.header.lines[0]).toBe('#!AER-DAT3.1');
    expect(index.header.lines).toHaveLength(305);
    expect(index.packets).toBe(15);
    for (let k = 0; k < 15; k++) {
      const chunk = ev.t.slice(k * 7, k * 7 + 7);
      expect(index.first[k]).toBe(Math.round(chunk[0]! * 1e6));
      expect(index.last[k]).toBe(Math.round(chunk[chunk.length - 1]! * 1e6));
      expect(index.events[k]).toBe(chunk.length);
      expect(index.bytes[k]).toBe(28 + 8 * chunk.length);
    }
    // after the header, every read is a packet header (+ first event) or a last event's timestamp
    const headerReads = f.reads.filter(([pos]) => pos === 0);
    expect(headerReads.length).toBeGreaterThan(1); // the 12 KB header needed a second, larger read
    for (const [pos, n] of f.reads.filter(([pos]) => pos !== 0)) {
      expect(pos).toBeGreaterThanOrEqual(index.header.dataStart);
      expect(n).toBeLessThanOrEqual(36);
    }
    expect(f.reads.length - headerReads.length).toBe(packets.length + 15);
  });

  it('reads the valid events of an interval, times after its start, from the overlapping packets only', async () => {
    const ev = stream(2, 400, 10, 4);
    const valid = Array.from(ev.t, (_, i) => i % 11 !== 3);
    const packets = polarityPackets(ev, 25).map((p, k) => ({ ...p, valid: valid.slice(k * 25, k * 25 + 25) }));
    const f = memFile(encodeAedat31(packets));
    const index = await indexAedat(f);
    const r = createRng(3);
    for (let trial = 0; trial < 60; trial++) {
      const a = Math.round((10 + r() * 4) * 1e6);
      const b = trial % 10 === 0 ? a : a + Math.round(r() * 1.5e6);
      f.reads.length = 0;
      const got = await readAedatInterval(f, index, a, b, DVS128_SENSOR, 'sample');
      const want = Array.from(ev.t.keys()).filter((i) => valid[i] && Math.round(ev.t[i]! * 1e6) >= a && Math.round(ev.t[i]! * 1e6) < b);
      expect(Array.from(got.t)).toEqual(want.map((i) => (Math.round(ev.t[i]! * 1e6) - a) / 1e6));
      expect(Array.from(got.x)).toEqual(want.map((i) => ev.x[i]));
      expect(Array.from(got.y)).toEqual(want.map((i) => ev.y[i]));
      expect(Array.from(got.p)).toEqual(want.map((i) => ev.p[i]));
      const { from, to } = packetsOverlapping(index, a, b);
      if (from === to) expect(f.reads).toEqual([]);
      else expect(f.reads).toEqual([[index.offset[from], index.offset[to - 1]! + index.bytes[to - 1]! - index.offset[from]!]]);
    }
  });

  it('reads full times across the 2³¹ µs overflow, and scans a whole recording packet by packet', async () => {
    const base = 2 ** 31 / 1e6;
    const ev = eventsOf([base - 0.000002, base - 0.000001, base, base + 0.5], [1, 2, 3, 4], [0, 0, 0, 0], [1, 0, 1, 0]);
    const bytes = encodeAedat31([{ events: eventsOf(ev.t.slice(0, 2), ev.x.slice(0, 2)) }, { events: eventsOf(ev.t.slice(2), ev.x.slice(2)) }]);
    const path = join(tmp, 'overflow.aedat');
    writeFileSync(path, bytes);
    const f = await nodeFiles.open(path);
    try {
      const index = await indexAedat(f);
      expect(Array.from(index.first)).toEqual([2 ** 31 - 2, 2 ** 31]);
      const got = await readAedatInterval(f, index, 2 ** 31 - 1, 2 ** 31 + 1, DVS128_SENSOR, 's');
      expect(Array.from(got.x)).toEqual([2, 3]);
      expect(Array.from(got.t)).toEqual([0, 0.000001]);
      const seen: number[] = [];
      await scanAedat(f, index, DVS128_SENSOR, (e, k) => seen.push(k, ...Array.from(e.t)));
      expect(seen).toEqual([0, 0, 0.000001, 1, 0.000002, 0.500002]);
    } finally {
      await f.close();
    }
  });

  it('refuses other AEDAT versions, foreign files and headers without an end, naming the file', async () => {
    const { body } = headerOf(encodeAedat31(polarityPackets(stream(4, 10, 0, 1), 5)));
    const v2 = await refusal(readAedatHeader(memFile(concat(text('#!AER-DAT2.0\r\n# jAER\r\n'), body))));
    expect(v2.message).toBe(
      "/data/user01_led.aedat: is AEDAT 2.0; this reader reads AEDAT 3.1 (DVS Gesture's format). Convert the file with iniVation's tools, or use the recordings as published",
    );
    expect((await refusal(indexAedat(memFile(text('hello world\n'))))).message).toContain('does not start with the line #!AER-DAT3.1: not an AEDAT 3.1 file');
    expect((await refusal(indexAedat(memFile(new Uint8Array(0))))).message).toContain('(it is empty)');
    const noEnd = await refusal(indexAedat(memFile(concat(text('#!AER-DAT3.1\r\n#Format: RAW\r\n'), body))));
    expect(noEnd.message).toMatch(/^\/data\/user01_led\.aedat: header line 3 \(byte 28\) does not start with '#' and no #!END-HEADER line came before it/);
    const cut = await refusal(indexAedat(memFile(text('#!AER-DAT3.1\r\n#Format: RAW\r\n#Source'))));
    expect(cut.message).toContain('no #!END-HEADER line ends the header');
  });

  it('refuses packets cut short and impossible packet headers, naming the file and the packet', async () => {
    const whole = encodeAedat31(polarityPackets(stream(5, 20, 0, 1), 10));
    const { head } = headerOf(whole);
    const short = await refusal(indexAedat(memFile(whole.subarray(0, whole.length - 3))));
    expect(short.message).toBe(
      `/data/user01_led.aedat: packet 1 at byte ${head.length + 108} is cut short: it holds 10 events of 8 bytes (80 bytes) but the file ends 77 bytes after its header. The file is truncated; extract or download it again`,
    );
    const halfHeader = await refusal(indexAedat(memFile(concat(whole, new Uint8Array(10)))));
    expect(halfHeader.message).toContain(`packet 2 at byte ${whole.length} is cut short: its 28-byte header has only 10 bytes`);
    const bad = whole.slice();
    new DataView(bad.buffer).setInt32(head.length + 20, 11, true); // eventNumber 11 > eventCapacity 10
    expect((await refusal(indexAedat(memFile(bad)))).message).toContain(
      `packet 0 at byte ${head.length} has an impossible header (eventSize 8, eventCapacity 10, eventNumber 11)`,
    );
    const wide = encodeAedat31([{ eventType: 1, eventSize: 12, count: 1 }]);
    expect((await refusal(indexAedat(memFile(wide)))).message).toContain('holds polarity events of 12 bytes');
  });

  it('refuses negative and decreasing timestamps and coordinates off the sensor', async () => {
    const neg = await refusal(indexAedat(memFile(encodeAedat31([{ events: eventsOf([-0.000005, 0.1], [1, 1]) }]))));
    expect(neg.message).toContain('packet 0 at byte');
    expect(neg.message).toContain('event 0, has a negative timestamp (-5 µs)');
    // a negative time inside a packet shows when the packet is read
    const mid = memFile(encodeAedat31([{ events: eventsOf([0.1, -0.000005, 0.3], [1, 1, 1]) }]));
    const midIndex = await indexAedat(mid);
    expect((await refusal(readAedatInterval(mid, midIndex, 0, 1e6, DVS128_SENSOR, 'rec.aedat (sample 4)'))).message).toMatch(
      /^rec\.aedat \(sample 4\): the polarity event at byte \d+ has a negative timestamp \(-5 µs\)/,
    );
    const across = await refusal(indexAedat(memFile(encodeAedat31([{ events: eventsOf([1, 2], [0, 0]) }, { events: eventsOf([1.5, 3], [0, 0]) }]))));
    expect(across.message).toContain('packet 1 at byte');
    expect(across.message).toContain('starts (1500000 µs) before the packet before it ends (2000000 µs): timestamps must not decrease');
    const within = await refusal(indexAedat(memFile(encodeAedat31([{ events: eventsOf([2, 1], [0, 0]) }]))));
    expect(within.message).toContain('packet 0 at byte');
    expect(within.message).toContain('ends (1000000 µs) before it starts (2000000 µs)');
    const inner = memFile(encodeAedat31([{ events: eventsOf([1, 1.2, 1.1, 2], [0, 0, 0, 0]) }]));
    const innerIndex = await indexAedat(inner);
    expect((await refusal(readAedatInterval(inner, innerIndex, 0, 3e6, DVS128_SENSOR, 'rec.aedat (sample 0)'))).message).toBe(
      'rec.aedat (sample 0): event 2 is earlier (1.1) than the event before it (1.2): times must not decrease',
    );
    const off = memFile(encodeAedat31([{ events: eventsOf([1, 2], [3, 200], [0, 5]) }]));
    const offIndex = await indexAedat(off);
    expect((await refusal(readAedatInterval(off, offIndex, 0, 3e6, DVS128_SENSOR, 'rec.aedat (sample 2)'))).message).toBe(
      'rec.aedat (sample 2): event 1 has x 200, outside 0..127',
    );
  });
});
