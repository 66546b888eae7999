import { LabIcon } from '@jupyterlab/ui-components';

// A phase-plane orbit: the picture of an ODE solution. The jp-icon3 class lets themes recolour
// the stroke and the dot; the orbit itself stays unfilled.
const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">
  <g fill="none" stroke-width="1.8" stroke-linecap="round">
    <path class="jp-icon3" stroke="#616161" d="M4 18c0-8 5-13 11-13 4 0 5 3 3 6-2 4-7 7-11 7-2 0-3-1-3-3z"/>
  </g>
  <circle class="jp-icon3" cx="15" cy="5" r="2" fill="#616161"/>
</svg>`;

export const odelabIcon = new LabIcon({ name: 'odelab:icon', svgstr: svg });
