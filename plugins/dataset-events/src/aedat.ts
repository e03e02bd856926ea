import { configError } from '@spikeflow/core';
import { checkEvents, type Events, type Sensor } from '@spikeflow/events';
import { invalid, type RandomAccessFile } from './files.js';

/*
 * AEDAT 3.1 (iniVation, https://docs.inivation.com/software/software-advanced-usage/file-formats/aedat-3.1.html):
 * ASCII header lines that start with '#' and end with CRLF, the first `#!AER-DAT3.1`, the last
 * `#!END-HEADER`; then event packets, all integers little-endian. A packet is a 28-byte header
 * (int16 eventType, int16 eventSource, int32 eventSize, int32 eventTSOffset, int32
 * eventTSOverflow, int32 eventCapacity, int32 eventNumber, int32 eventValid) followed by
 * eventCapacity × eventSize bytes of events. A polarity event (eventType 1, 8 bytes) is a uint32
 * (bit 0 valid, bit 1 polarity, bits 2–16 y, bits 17–31 x) and an int32 timestamp in µs; the full
 * time is eventTSOverflow · 2³¹ + timestamp (libcaer's events/common.h and events/polarity.h).
 */

/** The version line every AEDAT 3.1 file starts with. */
export const AEDAT31_MAGIC = '#!AER-DAT3.1';
/** The line that ends an AEDAT 3.1 header. */
export const AEDAT_END_HEADER = '#!END-HEADER';
/** Bytes of an event packet's header. */
export const PACKET_HEADER_BYTES = 28;
/** eventType of polarity (DVS) events. */
export const POLARITY_EVENT = 1;
/** Bytes of one polarity event. */
export const POLARITY_EVENT_BYTES = 8;

/** The longest header read before giving up on finding its end. */
const MAX_HEADER_BYTES = 1 << 20;
const OVERFLOW = 2 ** 31;
const latin1 = new TextDecoder('latin1');

/** A packet header as stored. */
export interface PacketHeader {
  readonly eventType: number;
  readonly eventSource: number;
  readonly eventSize: number;
  readonly eventTSOffset: number;
  readonly eventTSOverflow: number;
  readonly eventCapacity: number;
  readonly eventNumber: number;
  readonly eventValid: number;
}

function packetHeader(b: Uint8Array, at = 0): PacketHeader {
  const v = new DataView(b.buffer, b.byteOffset + at, PACKET_HEADER_BYTES);
  return {
    eventType: v.getInt16(0, true),
    eventSource: v.getInt16(2, true),
    eventSize: v.getInt32(4, true),
    eventTSOffset: v.getInt32(8, true),
    eventTSOverflow: v.getInt32(12, true),
    eventCapacity: v.getInt32(16, true),
    eventNumber: v.getInt32(20, true),
    eventValid: v.getInt32(24, true),
  };
}

/** Whether `bytes` start with the AEDAT 3.1 version line. */
export function isAedat31(bytes: Uint8Array): boolean {
  if (bytes.length < AEDAT31_MAGIC.length + 1) return false;
  const next = bytes[AEDAT31_MAGIC.length];
  return latin1.decode(bytes.subarray(0, AEDAT31_MAGIC.length)) === AEDAT31_MAGIC && (next === 0x0d || next === 0x0a);
}

/** The header lines (without line ends) and the byte where the packets start. */
export interface AedatHeader {
  readonly lines: readonly string[];
  readonly dataStart: number;
}

/**
 * Reads the header of an AEDAT 3.1 file. `DATA_INVALID` where the first line is not
 * `#!AER-DAT3.1` (naming the version found, if it is another AEDAT), or the header has no
 * `#!END-HEADER` line before its first line that does not start with '#' or the file's end.
 */
export async function readAedatHeader(file: RandomAccessFile): Promise<AedatHeader> {
  let want = Math.min(file.size, 4096);
  for (;;) {
    const buf = await file.read(0, want);
    if (!isAedat31(buf)) {
      const nl = buf.indexOf(0x0a);
      const first = latin1.decode(buf.subarray(0, Math.min(nl < 0 ? buf.length : nl, 40))).replace(/\r$/, '');
      const version = /^#!AER-DAT(\d+\.\d+)/.exec(first)?.[1];
      throw invalid(
        file.path,
        version
          ? `is AEDAT ${version}; this reader reads AEDAT 3.1 (DVS Gesture's format). Convert the file with iniVation's tools, or use the recordings as published`
          : `does not start with the line ${AEDAT31_MAGIC}: not an AEDAT 3.1 file${buf.length === 0 ? ' (it is empty)' : ''}`,
        { file: file.path },
      );
    }
    const lines: string[] = [];
    let pos = 0;
    for (;;) {
      if (pos < buf.length && buf[pos] !== 0x23 /* '#' */) {
        throw invalid(
          file.path,
          `header line ${lines.length + 1} (byte ${pos}) does not start with '#' and no ${AEDAT_END_HEADER} line came before it: the header is damaged`,
          { file: file.path },
        );
      }
      const nl = buf.indexOf(0x0a, pos);
      if (nl < 0) break;
      const line = latin1.decode(buf.subarray(pos, nl)).replace(/\r$/, '');
      lines.push(line);
      pos = nl + 1;
      if (line === AEDAT_END_HEADER) return { lines, dataStart: pos };
    }
    if (want >= file.size || want >= MAX_HEADER_BYTES) {
      throw invalid(file.path, `no ${AEDAT_END_HEADER} line ends the header (read ${buf.length} bytes): the file is truncated or damaged`, { file: file.path });
    }
    want = Math.min(file.size, MAX_HEADER_BYTES, want * 4);
  }
}

/**
 * Where the polarity packets of a recording lie and the times they span, as {@link indexAedat}
 * finds them (packets of other event types are left out).
 */
export interface AedatIndex {
  readonly path: string;
  readonly size: number;
  readonly header: AedatHeader;
  /** Polarity packets with at least one event. */
  readonly packets: number;
  /** Byte where packet k's header starts. */
  readonly offset: Float64Array;
  /** Bytes of packet k, header included. */
  readonly bytes: Float64Array;
  /** Full time (µs) of packet k's first and last events. */
  readonly first: Float64Array;
  readonly last: Float64Array;
  /** eventNumber of packet k. */
  readonly events: Int32Array;
}

/** Checks a packet header read at `pos`; returns the bytes of its events. */
function checkPacket(h: PacketHeader, k: number, pos: number, size: number, path: string): number {
  const at = `packet ${k} at byte ${pos}`;
  if (h.eventSize <= 0 || h.eventCapacity < 0 || h.eventNumber < 0 || h.eventNumber > h.eventCapacity) {
    throw invalid(
      path,
      `${at} has an impossible header (eventSize ${h.eventSize}, eventCapacity ${h.eventCapacity}, eventNumber ${h.eventNumber}): the file is damaged or not AEDAT 3.1`,
      { file: path, packet: k, offset: pos },
    );
  }
  if (h.eventType === POLARITY_EVENT && h.eventSize !== POLARITY_EVENT_BYTES) {
    throw invalid(path, `${at} holds polarity events of ${h.eventSize} bytes; AEDAT 3.1 polarity events are ${POLARITY_EVENT_BYTES} bytes`, {
      file: path,
      packet: k,
      offset: pos,
    });
  }
  const body = h.eventCapacity * h.eventSize;
  const left = size - pos - PACKET_HEADER_BYTES;
  if (body > left) {
    throw invalid(
      path,
      `${at} is cut short: it holds ${h.eventCapacity} events of ${h.eventSize} bytes (${body} bytes) but the file ends ${left} bytes after its header. The file is truncated; extract or download it again`,
      { file: path, packet: k, offset: pos },
    );
  }
  return body;
}

const negative = (path: string, k: number, pos: number, e: number, ts: number) =>
  invalid(path, `packet ${k} at byte ${pos}, event ${e}, has a negative timestamp (${ts} µs): the file is damaged`, {
    file: path,
    packet: k,
    offset: pos,
    event: e,
  });

/**
 * Indexes a recording with positioned reads of only the packet headers and the first and last
 * event of each polarity packet: their offsets and the times they span. `DATA_INVALID` for a bad
 * header (see {@link readAedatHeader}), a packet cut short, an impossible packet header, a
 * negative timestamp, or times that decrease within a packet or from one packet to the next.
 */
export async function indexAedat(file: RandomAccessFile): Promise<AedatIndex> {
  const header = await readAedatHeader(file);
  const { path, size } = file;
  const offset: number[] = [];
  const bytes: number[] = [];
  const first: number[] = [];
  const last: number[] = [];
  const events: number[] = [];
  let pos = header.dataStart;
  let prevLast = -Infinity;
  for (let k = 0; pos < size; k++) {
    const head = await file.read(pos, PACKET_HEADER_BYTES + POLARITY_EVENT_BYTES);
    if (head.length < PACKET_HEADER_BYTES) {
      throw invalid(
        path,
        `packet ${k} at byte ${pos} is cut short: its ${PACKET_HEADER_BYTES}-byte header has only ${head.length} bytes. The file is truncated; extract or download it again`,
        { file: path, packet: k, offset: pos },
      );
    }
    const h = packetHeader(head);
    const body = checkPacket(h, k, pos, size, path);
    if (h.eventType === POLARITY_EVENT && h.eventNumber > 0) {
      const firstTs = new DataView(head.buffer, head.byteOffset).getInt32(PACKET_HEADER_BYTES + 4, true);
      const tail = await file.read(pos + PACKET_HEADER_BYTES + (h.eventNumber - 1) * POLARITY_EVENT_BYTES + 4, 4);
      const lastTs = new DataView(tail.buffer, tail.byteOffset).getInt32(0, true);
      if (firstTs < 0) throw negative(path, k, pos, 0, firstTs);
      if (lastTs < 0) throw negative(path, k, pos, h.eventNumber - 1, lastTs);
      const t0 = h.eventTSOverflow * OVERFLOW + firstTs;
      const t1 = h.eventTSOverflow * OVERFLOW + lastTs;
      if (t1 < t0)
        throw invalid(path, `packet ${k} at byte ${pos} ends (${t1} µs) before it starts (${t0} µs): timestamps must not decrease`, {
          file: path,
          packet: k,
          offset: pos,
        });
      if (t0 < prevLast) {
        throw invalid(path, `packet ${k} at byte ${pos} starts (${t0} µs) before the packet before it ends (${prevLast} µs): timestamps must not decrease`, {
          file: path,
          packet: k,
          offset: pos,
        });
      }
      prevLast = t1;
      offset.push(pos);
      bytes.push(PACKET_HEADER_BYTES + body);
      first.push(t0);
      last.push(t1);
      events.push(h.eventNumber);
    }
    pos += PACKET_HEADER_BYTES + body;
  }
  return {
    path,
    size,
    header,
    packets: offset.length,
    offset: Float64Array.from(offset),
    bytes: Float64Array.from(bytes),
    first: Float64Array.from(first),
    last: Float64Array.from(last),
    events: Int32Array.from(events),
  };
}

/** The first k in [0, n) with `ok(k)` (ok monotone: false then true); n where none. */
function lowerBound(n: number, ok: (k: number) => boolean): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ok(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** The polarity packets [from, to) that hold times in [startUs, endUs). */
export function packetsOverlapping(index: AedatIndex, startUs: number, endUs: number): { from: number; to: number } {
  const from = lowerBound(index.packets, (k) => index.last[k]! >= startUs);
  const to = lowerBound(index.packets, (k) => index.first[k]! >= endUs);
  return { from, to: Math.max(from, to) };
}

/**
 * Decodes the valid polarity events with full times in [startUs, endUs) from `buf`, which holds
 * whole packets (any types) starting at file byte `at`; times become seconds after `startUs`.
 * `where` names the file and sample in errors.
 */
function decodePackets(buf: Uint8Array, at: number, startUs: number, endUs: number, where: string): Events {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const walk = (fill: Events | undefined): number => {
    let n = 0;
    for (let pos = 0; pos + PACKET_HEADER_BYTES <= buf.length; ) {
      const h = packetHeader(buf, pos);
      const base = pos + PACKET_HEADER_BYTES;
      if (h.eventType === POLARITY_EVENT) {
        for (let e = 0; e < h.eventNumber; e++) {
          const data = v.getUint32(base + e * POLARITY_EVENT_BYTES, true);
          if ((data & 1) === 0) continue;
          const ts = v.getInt32(base + e * POLARITY_EVENT_BYTES + 4, true);
          if (ts < 0) {
            throw invalid(
              where,
              `the polarity event at byte ${at + base + e * POLARITY_EVENT_BYTES} has a negative timestamp (${ts} µs): the file is damaged`,
              { offset: at + base + e * POLARITY_EVENT_BYTES },
            );
          }
          const full = h.eventTSOverflow * OVERFLOW + ts;
          if (full < startUs || full >= endUs) continue;
          if (fill) {
            fill.t[n] = (full - startUs) / 1e6;
            fill.x[n] = (data >>> 17) & 0x7fff;
            fill.y[n] = (data >>> 2) & 0x7fff;
            fill.p[n] = (data >>> 1) & 1;
          }
          n++;
        }
      }
      pos = base + h.eventCapacity * h.eventSize;
    }
    return n;
  };
  const n = walk(undefined);
  const ev = { t: new Float64Array(n), x: new Int32Array(n), y: new Int32Array(n), p: new Int32Array(n) };
  walk(ev);
  return ev;
}

/** The bytes of polarity packets [from, to) and what lies between them, in one positioned read. */
async function readPackets(file: RandomAccessFile, index: AedatIndex, from: number, to: number, where: string): Promise<{ buf: Uint8Array; at: number }> {
  if (file.size !== index.size) {
    throw invalid(
      where,
      `the file is ${file.size} bytes now but was ${index.size} when it was indexed: it changed while the dataset was open; open the dataset again`,
    );
  }
  const at = index.offset[from]!;
  const end = index.offset[to - 1]! + index.bytes[to - 1]!;
  const buf = await file.read(at, end - at);
  if (buf.length < end - at)
    throw invalid(where, `the file ends at byte ${at + buf.length}, before the packets indexed up to byte ${end}: it was truncated while the dataset was open`);
  return { buf, at };
}

/**
 * The valid polarity events with full times in [startUs, endUs), times in seconds after
 * `startUs`. Reads one contiguous range: from the first polarity packet that overlaps the interval
 * to the end of the last one (packets of other types between them included), nothing else.
 * Checked with `checkEvents` against `sensor`; `where` names the file and sample in errors.
 */
export async function readAedatInterval(
  file: RandomAccessFile,
  index: AedatIndex,
  startUs: number,
  endUs: number,
  sensor: Sensor,
  where: string,
): Promise<Events> {
  const { from, to } = packetsOverlapping(index, startUs, endUs);
  let ev: Events = { t: new Float64Array(0), x: new Int32Array(0), y: new Int32Array(0), p: new Int32Array(0) };
  if (from < to) {
    const { buf, at } = await readPackets(file, index, from, to, where);
    ev = decodePackets(buf, at, startUs, endUs, where);
  }
  checkEvents(ev, sensor, where);
  return ev;
}

/**
 * Visits a whole recording one polarity packet at a time (bounded memory): the valid events of
 * each packet, times in seconds after `originUs` (default the first packet's first time; earlier
 * events are left out), checked against `sensor`.
 */
export async function scanAedat(
  file: RandomAccessFile,
  index: AedatIndex,
  sensor: Sensor,
  visit: (events: Events, packet: number) => void,
  originUs = index.packets ? index.first[0]! : 0,
): Promise<void> {
  for (let k = 0; k < index.packets; k++) {
    const where = `${file.path}, packet ${k} (byte ${index.offset[k]})`;
    const { buf, at } = await readPackets(file, index, k, k + 1, where);
    const ev = decodePackets(buf, at, originUs, Infinity, where);
    checkEvents(ev, sensor, where);
    visit(ev, k);
  }
}

/** A packet of polarity events to encode. */
export interface AedatPolarityPacket {
  /** The events; times in seconds (full device time), rounded to whole microseconds. */
  readonly events: Events;
  /** Per event, whether its valid bit is set (default: all valid). */
  readonly valid?: ArrayLike<boolean>;
  /** eventTSOverflow (default: the first event's full time ÷ 2³¹, rounded down, at least 0). */
  readonly tsOverflow?: number;
  readonly eventSource?: number;
}

/** A packet of another event type, written as given (its bodies zero where `data` is absent). */
export interface AedatRawPacket {
  readonly eventType: number;
  readonly eventSize: number;
  /** eventCapacity = eventNumber = eventValid. */
  readonly count: number;
  readonly eventSource?: number;
  readonly data?: Uint8Array;
}

export type AedatPacket = AedatPolarityPacket | AedatRawPacket;

export interface AedatEncodeOptions {
  /** Device named in the `#Source` line (default `DVS128`). */
  readonly source?: string;
  /** Value of the `#Start-Time` line (default `2017-01-01 00:00:00 (TZ+0000)`). */
  readonly startTime?: string;
  /** More header lines (each starting with '#'), before `#!END-HEADER`. */
  readonly headerLines?: readonly string[];
}

/**
 * Encodes packets as an AEDAT 3.1 file (the format {@link indexAedat} reads): the header lines
 * `#!AER-DAT3.1`, `#Format: RAW`, `#Source 1: <source>`, `#Start-Time: …`, any extra ones and
 * `#!END-HEADER`, CRLF-terminated; then each packet's 28-byte header and events. Coordinates may
 * be 0..32767 and times anything that fits the packet's 31-bit timestamps (negative ones too), so
 * that tests can write malformed recordings; nothing is checked against a sensor.
 */
export function encodeAedat31(packets: readonly AedatPacket[], options: AedatEncodeOptions = {}): Uint8Array {
  const lines = [
    AEDAT31_MAGIC,
    '#Format: RAW',
    `#Source 1: ${options.source ?? 'DVS128'}`,
    `#Start-Time: ${options.startTime ?? '2017-01-01 00:00:00 (TZ+0000)'}`,
    ...(options.headerLines ?? []),
    AEDAT_END_HEADER,
  ];
  lines.forEach((l, i) => {
    if (!l.startsWith('#') || /[\r\n]/.test(l))
      throw configError(`headerLines[${i}]`, `a header line starts with '#' and holds no line break, got ${JSON.stringify(l)}`);
  });
  const head = new TextEncoder().encode(lines.map((l) => `${l}\r\n`).join(''));
  const sizes = packets.map((p) => PACKET_HEADER_BYTES + ('events' in p ? p.events.t.length * POLARITY_EVENT_BYTES : p.count * p.eventSize));
  const out = new Uint8Array(head.length + sizes.reduce((a, b) => a + b, 0));
  out.set(head);
  const v = new DataView(out.buffer);
  let pos = head.length;
  packets.forEach((p, k) => {
    const at = `packets[${k}]`;
    if ('events' in p) {
      const { t, x, y, p: pol } = p.events;
      const n = t.length;
      const us = Array.from(t, (s) => Math.round(s * 1e6));
      const ov = p.tsOverflow ?? (n ? Math.max(0, Math.floor(us[0]! / OVERFLOW)) : 0);
      if (p.valid && p.valid.length !== n) throw configError(`${at}.valid`, `has ${p.valid.length} values for ${n} events`);
      writeHeader(v, pos, {
        eventType: POLARITY_EVENT,
        eventSource: p.eventSource ?? 1,
        eventSize: 8,
        eventTSOffset: 4,
        eventTSOverflow: ov,
        eventCapacity: n,
        eventNumber: n,
        eventValid: p.valid ? Array.from(p.valid).filter(Boolean).length : n,
      });
      for (let i = 0; i < n; i++) {
        const ts = us[i]! - ov * OVERFLOW;
        if (!(ts >= -OVERFLOW && ts < OVERFLOW)) throw configError(`${at}.events.t[${i}]`, `${t[i]} s does not fit a 32-bit timestamp with tsOverflow ${ov}`);
        for (const [name, val] of [
          ['x', x[i]!],
          ['y', y[i]!],
        ] as const) {
          if (!(val >= 0 && val <= 0x7fff)) throw configError(`${at}.events.${name}[${i}]`, `${val} does not fit 15 bits`);
        }
        if (pol[i] !== 0 && pol[i] !== 1) throw configError(`${at}.events.p[${i}]`, `must be 0 (OFF) or 1 (ON), got ${pol[i]}`);
        const valid = p.valid ? (p.valid[i] ? 1 : 0) : 1;
        const base = pos + PACKET_HEADER_BYTES + i * POLARITY_EVENT_BYTES;
        v.setUint32(base, ((x[i]! << 17) | (y[i]! << 2) | (pol[i]! << 1) | valid) >>> 0, true);
        v.setInt32(base + 4, ts, true);
      }
    } else {
      if (!(Number.isInteger(p.eventSize) && p.eventSize > 0)) throw configError(`${at}.eventSize`, `must be a positive whole number, got ${p.eventSize}`);
      writeHeader(v, pos, {
        eventType: p.eventType,
        eventSource: p.eventSource ?? 1,
        eventSize: p.eventSize,
        eventTSOffset: Math.max(0, p.eventSize - 4),
        eventTSOverflow: 0,
        eventCapacity: p.count,
        eventNumber: p.count,
        eventValid: p.count,
      });
      if (p.data) {
        if (p.data.length !== p.count * p.eventSize)
          throw configError(`${at}.data`, `holds ${p.data.length} bytes, not count × eventSize = ${p.count * p.eventSize}`);
        out.set(p.data, pos + PACKET_HEADER_BYTES);
      }
    }
    pos += sizes[k]!;
  });
  return out;
}

function writeHeader(v: DataView, at: number, h: PacketHeader): void {
  v.setInt16(at, h.eventType, true);
  v.setInt16(at + 2, h.eventSource, true);
  v.setInt32(at + 4, h.eventSize, true);
  v.setInt32(at + 8, h.eventTSOffset, true);
  v.setInt32(at + 12, h.eventTSOverflow, true);
  v.setInt32(at + 16, h.eventCapacity, true);
  v.setInt32(at + 20, h.eventNumber, true);
  v.setInt32(at + 24, h.eventValid, true);
}

/** Splits events (in time order) into polarity packets of at most `perPacket` events each. */
export function polarityPackets(events: Events, perPacket: number): AedatPolarityPacket[] {
  if (!Number.isInteger(perPacket) || perPacket < 1) throw configError('perPacket', `must be a whole number ≥ 1, got ${perPacket}`);
  const out: AedatPolarityPacket[] = [];
  for (let i = 0; i < events.t.length; i += perPacket) {
    const j = Math.min(events.t.length, i + perPacket);
    out.push({ events: { t: events.t.slice(i, j), x: events.x.slice(i, j), y: events.y.slice(i, j), p: events.p.slice(i, j) } });
  }
  return out;
}
