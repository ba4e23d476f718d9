"""The analyst's tuning dashboard: the notebook's ``AlarmTuner`` served by ``panel serve``.

Move the threshold and read the precision, recall and false alarms per
camera-hour it would give on labelled synthetic clips. Below, the same from the
field: pick a detector, move its threshold over the alarms operators reviewed
(the alarm ledger's verdicts of ``$SAFECITY_STATE_DIR``, else a synthetic city
reviewed from its ground truth) and read the confirmed alarms it would lose and
the false alarms it would avoid.
"""
import os

import panel as pn

from safecity.app.access import guard, session_note
from safecity.evaluation.tuning import AlarmTuner, LedgerTuner

pn.extension()
guard()  # no page for an open server or a user without a role

tuner = AlarmTuner.from_synthetic_clips()
state_dir = os.environ.get("SAFECITY_STATE_DIR")
try:
    field = (LedgerTuner.from_state_dir(state_dir) if state_dir
             else LedgerTuner.from_simulated_review())
    from_ledger = pn.Row(
        pn.Column(pn.Param(field.param, widgets={"threshold": pn.widgets.FloatSlider},
                           name="From the alarm ledger"), css_classes=["ledger-tuner"]),
        pn.Column(field.readout, field.plot),
    )
except (FileNotFoundError, ValueError) as exc:  # a served city whose operators reviewed nothing yet
    from_ledger = pn.pane.Markdown(f"**From the alarm ledger:** {exc}", css_classes=["ledger-tuner"])
pn.Column(
    pn.Row(
        pn.Column(
            pn.Param(tuner.param, widgets={"threshold": pn.widgets.FloatSlider},
                     name="safecity · alarm tuning"),
            pn.pane.Markdown(session_note(tuner.role, "tune"), css_classes=["role-note"], width=300)),
        pn.Column(tuner.readout, tuner.plot),
    ),
    pn.layout.Divider(),
    from_ledger,
).servable(title="safecity · alarm tuning")
