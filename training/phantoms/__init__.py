"""A second phantom family, written apart from :mod:`napari_sff.simulate` and never used for training: an
independent check of generalisation (issue #11). Nothing here imports the simulator.

How it differs from the simulator
---------------------------------
* Shapes: upper arm, forearm and pelvis at the hip joints (the simulator draws thigh, calf and abdomen) built
  from signed-distance superellipses placed by anatomical polar coordinates; muscles are named shapes that
  compete by nearest boundary with thin septa (not a weighted Voronoi split), a random subset present per case,
  swelling and tapering through the slab; bones with cortex and yellow or red marrow, acetabulum and hip joint
  fluid, bladder, rectum (with gas), arteries (flow void), veins, nerves. Pathology of its own: edema inside
  muscles, cysts, lobulated masses with a necrotic core, and fatty infiltration patterned as streaks, a rim or
  patches (Mercuri-like grades).
* Physics: T2w TSE from an extended phase graph of the CPMG train (:mod:`.epg`, steady state over TR, refocusing
  120-180 deg scaled by a binned B1 map), k-space filled line by line from the echo that acquires it (T2 blurring
  and TE_eff come from the sequence), at twice the matrix and cropped (truncation, partial volume), fat shifted
  along the readout by 3.4 ppm / bandwidth, receive-coil bias, complex Gaussian noise -> magnitude, scanner
  scale, int16 storage. The simulator uses ``PD (1 - e^-TR/T1) e^-TE/T2`` and 2x2 averaging instead.
* Truth: SFF = fat PD / total PD per voxel (2x2 fine pixels), 0 where the mean PD is below 0.2 (air, cortex).

``python -m training.phantoms --out DIR --cases N --seed S [--size 256] [--slices 12]`` writes
``<case>_t2w/_sff/_labels/_tissues.nii.gz``, ``<case>_labels.json`` (label names), ``<case>_tissues.json``
(tissue class names: the per-tissue error breakdown of ``training.evaluate --tissues``) and ``phantoms.json`` (every drawn
number), readable by ``python -m training.data`` and ``python -m training.evaluate --rois``.

Ranges (per case; "guess" = plausible, not looked up; T1 at 3 T / 1.5 T, water component)
------------------------------------------------------------------------------------------
============== =========== =================== ========== ============ ===============================
tissue         PD          T1 ms 3 T / 1.5 T   T2 ms      fat fraction source
============== =========== =================== ========== ============ ===============================
air            0           --                  --         0            no protons
cortical_bone  0           --                  --         0            ultra-short T2
skin           0.65-0.8    900-1100 / 750-900  30-45      0-0.05       guess
adipose        0.9-1.0     900-1100 / 750-900  35-50      0.88-0.95    Hu & Kan 2013 (PDFF)
septum         0.8-0.95    1000-1300/850-1050  30-45      0.45-0.85    guess
muscle         0.72-0.85   1350-1450/1080-1180 28-36      by grade     Gold 2004
edema          0.8-0.92    1500-1800/1200-1450 45-75      <= 0.03      guess
yellow_marrow  0.9-1.0     550-750 / 450-600   40-60      0.75-0.95    Gold 2004; Karampinos 2018
red_marrow     0.85-0.95   650-900 / 550-750   40-60      0.35-0.70    Karampinos 2018
fluid          0.95-1.0    3000-4200/2600-3600 700-2000   0            Gold 2004; de Bazelaire 2004
mass           0.8-0.92    1200-1700/1000-1400 70-140     0-0.04       guess
necrosis       0.9-1.0     2000-3000/1700-2500 250-700    0            guess
artery         0.82-0.9    1600-1700/1400-1480 150-250    0            Lu 2004 (T1); TSE x 0.02-0.15
vein           0.82-0.9    1600-1700/1400-1480 80-200     0            Lu 2004 (T1); TSE x 0.4-1
nerve          0.8-0.9     1300-1500/1050-1200 55-80      0.15-0.35    guess
bowel          0.75-0.9    1100-1400/900-1150  50-120     0-0.08       guess
fat component  1           350-400 / 320-370   100-160    1            Gold 2004 (T1); apparent T2 guess
============== =========== =================== ========== ============ ===============================

Muscle fat fraction by grade (guess): normal 0.01-0.06, mild 0.06-0.15, moderate 0.15-0.35, severe 0.35-0.75.
Protocol (guess within clinical practice): field 1.5 or 3 T; TR 2000-6000 ms; ESP 8-15 ms; TE_eff 60-130 ms
(n_eff x ESP); ETL n_eff+1 .. min(2 n_eff + 6, 32); refocusing 120-180 deg; B1 spread 2-10 % (1.5 T), 8-30 %
(3 T); readout bandwidth 200-400 Hz/pixel; receive bias 10-45 %; SNR (muscle / noise SD) 12-60; FOV 150-200 mm
(upper arm), 120-160 mm (forearm), 380-460 mm (pelvis); slices 3-6 mm with 0-20 % gap.
"""

from training.phantoms.case import MANIFEST, PhantomCase, case_seed, make_case, write_cases
from training.phantoms.epg import cpmg_echoes, tse_echoes

__all__ = ["MANIFEST", "PhantomCase", "case_seed", "cpmg_echoes", "make_case", "tse_echoes", "write_cases"]
