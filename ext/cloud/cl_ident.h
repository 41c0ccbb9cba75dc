/*
 * cl_ident: stable identities of a slot.  The UUID and the MAC of a slot derive from a hash of
 * "<cloud>/<slot>" (plus a salt, bumped only to step around a collision), so that the same
 * manifest gives the same identities on every run and on every leader.  With a
 * starting_mac_address, slot i gets start + i, as operators of the seed expect.
 */
#ifndef CL_IDENT_H
#define CL_IDENT_H

#include <stdint.h>

#include "cl_err.h"

/* 64-bit hash of a string with a seed (FNV-1a, then a splitmix64 finaliser). */
uint64_t cl_ident_hash(const char *s, uint64_t seed);
/* RFC 9562 version-8 UUID from cloud/slot/salt into out[37]. */
void cl_ident_uuid(const char *cloud, const char *slot, unsigned salt, char out[37]);
/* Derived MAC 52:54:00:xx:xx:xx into out[18]. */
void cl_ident_mac_derived(const char *cloud, const char *slot, unsigned salt, char out[18]);
/* start + offset into out[18]; -1 (err) past ff:ff:ff:ff:ff:ff or on a malformed start. */
int cl_ident_mac_offset(const char *start, unsigned long offset, char out[18], cl_err_t *err);
/* Normalise a MAC to lower case in place; returns 0 if it is well-formed. */
int cl_ident_mac_norm(char *mac);

#endif
