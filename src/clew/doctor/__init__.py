"""``clew doctor``: the production checklist run against one node.

`facts` is the plain value every check reads (sysctls, links, routes, rules, conntrack counts);
`collect` is the only reader of the kernel (live, through ``clew.kernel``) and `dump_files`
reads the same files from a ``clew dump`` folder, so a dump gives the live answer offline.
Each check in `checks/` is a pure function of the facts returning one `Finding`; a check that
cannot be evaluated says ``skip`` and why, never a guess.
"""
