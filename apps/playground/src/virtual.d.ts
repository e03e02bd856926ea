declare module 'virtual:digits' {
  /** `perClass` digits of each class 0–9, class-major, 28×28 binary pixels (≥ 0.5), 8 to a byte (pixel i: bit i & 7 of byte i >> 3). */
  export const digits: { readonly perClass: number; readonly bits: Uint8Array };
}
