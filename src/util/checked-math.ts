// Arithmetic on values that came from disk: overflow or nonsense is corruption, not a crash.
import { corrupt, type Ext4ErrorWhere } from '../errors/ext4-error.ts';

/** Throws EUCLEAN unless `v` is a safe non-negative integer. */
export function checkedNat(v: number, what: string, where?: Ext4ErrorWhere): number {
  if (!Number.isSafeInteger(v) || v < 0) throw corrupt('arithmetic', `${what} out of range: ${v}`, where);
  return v;
}
export function checkedAdd(a: number, b: number, what: string, where?: Ext4ErrorWhere): number {
  return checkedNat(a + b, what, where);
}
export function checkedMul(a: number, b: number, what: string, where?: Ext4ErrorWhere): number {
  return checkedNat(a * b, what, where);
}
export const ceilDiv = (a: number, b: number): number => Math.floor((a + b - 1) / b);
export const isPow2 = (n: number): boolean => n > 0 && Number.isInteger(n) && (n & (n - 1)) === 0 && n <= 2 ** 30;
export const log2 = (n: number): number => Math.round(Math.log2(n));
