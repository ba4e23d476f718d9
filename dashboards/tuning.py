"""The analyst's tuning dashboard: the notebook's ``AlarmTuner`` served by ``panel serve``.

Move the threshold and read the precision, recall and false alarms per
camera-hour it would give on labelled synthetic clips.
"""
import panel as pn

from safecity.app.access import guard, session_note
from safecity.evaluation.tuning import AlarmTuner

pn.extension()
guard()  # no page for an open server or a user without a role

tuner = AlarmTuner.from_synthetic_clips()
pn.Row(
    pn.Column(
        pn.Param(tuner.param, widgets={"threshold": pn.widgets.FloatSlider}, name="safecity · alarm tuning"),
        pn.pane.Markdown(session_note(tuner.role, "tune"), css_classes=["role-note"], width=300)),
    pn.Column(tuner.readout, tuner.plot),
).servable(title="safecity · alarm tuning")
