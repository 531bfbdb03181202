"""How the processes of a run talk: the wire records, the socket layout, bounded inboxes,
credits, CURVE, gated publishers, status reports and the text topic. Imports no other
sub-package of ``stream``."""
