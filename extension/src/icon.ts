import { LabIcon } from '@jupyterlab/ui-components';

// A phase-plane orbit: the picture of an ODE solution.
const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">
  <g class="jp-icon3" fill="none" stroke="#616161" stroke-width="1.8" stroke-linecap="round">
    <path d="M4 18c0-8 5-13 11-13 4 0 5 3 3 6-2 4-7 7-11 7-2 0-3-1-3-3z"/>
    <circle cx="15" cy="5" r="1.6" fill="#616161"/>
  </g>
</svg>`;

export const odelabIcon = new LabIcon({ name: 'odelab:icon', svgstr: svg });
