/*
 * cl_tmpl: the vm_domain template.  A libvirt domain XML with {{placeholders}} (the seed's
 * ERB forms <%= vm[:name] %> are accepted as aliases), rendered per slot with XML-escaped
 * values, and stamped with the ownership <metadata> that lets any leader rebuild its view
 * from the hosts' domains alone.
 */
#ifndef CL_TMPL_H
#define CL_TMPL_H

#include "cl_err.h"

#define CL_META_URI "urn:x-puppet-cloud:owner:1"
#define CL_META_PREFIX "cloud"

/* Placeholders a template must contain (NULL-terminated). */
extern const char *const cl_tmpl_required[];
/* Every known placeholder (NULL-terminated). */
extern const char *const cl_tmpl_known[];

typedef struct cl_tmpl_vars {
    const char *name;       /* {{name}}: domain name */
    const char *uuid;       /* {{uuid}} */
    const char *mac;        /* {{mac}} */
    const char *disk;       /* {{disk}}: the slot's overlay (or the image on the test driver) */
    const char *image;      /* {{image}}: the base image of the manifest */
    const char *ip;         /* {{ip}} */
    const char *role;       /* {{role}}: first role */
    const char *roles;      /* {{roles}}: comma-separated roles */
    const char *cloud;      /* {{cloud}} */
    const char *host;       /* {{host}}: pool host the slot is placed on */
    const char *slot;       /* {{slot}}: same as name */
    unsigned long memory;   /* {{memory}}: KiB */
    unsigned vcpus;         /* {{vcpus}} */
    int index;              /* {{index}} */
    const char *ssh_pubkey; /* {{ssh_pubkey}}: base64 of the ssh_key's public key line */
} cl_tmpl_vars_t;

/* Root element is <domain>, required placeholders present, no unknown one. */
int cl_tmpl_check(const char *tmpl, cl_err_t *err);
/*
 * Render tmpl with vars and insert metadata_xml (an element in CL_META_URI, may be NULL) into
 * the domain's <metadata>.  Returns a malloc'ed string (caller frees) or NULL with err set.
 */
char *cl_tmpl_render(const char *tmpl, const cl_tmpl_vars_t *vars, const char *metadata_xml,
                     cl_err_t *err);
/* XML-escape src into a malloc'ed string. */
char *cl_tmpl_escape(const char *src);

#endif
